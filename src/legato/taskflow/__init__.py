"""TaskFlow's import paths, for programs moving to Legato.

A program written for OpenStack TaskFlow's conductors runs on Legato with its ``taskflow``
imports changed to ``legato.taskflow`` (``from legato.taskflow import engines, task, retry``,
``from legato.taskflow.jobs import backends as job_backends``...) and its boards given as URLs.
Every name here is Legato's own object under the module path and call shape TaskFlow documents;
nothing is reimplemented. New code should use Legato's own modules (``legato``,
``legato.jobboard``, ``legato.conductor``...): docs/migrating-from-taskflow.md maps each name.

What intentionally differs from TaskFlow (a conductor only runs registered flow factories,
claims are leases with fencing, ...) is listed there too.
"""

from __future__ import annotations
