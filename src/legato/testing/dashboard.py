"""Running the dashboard in a thread for tests: ``with running(app) as url: ...``."""

from __future__ import annotations

from legato.dashboard.serving import running

__all__ = ["running"]
