"""``taskflow.jobs.backends``: ``fetch(name, conf, persistence=...)`` and ``backend(...)``.

Legato names a board by URL (``zookeeper://host:2181/path``, ``redis://host:6379/0``,
``postgresql://...``, ``sqlite:///jobs.db``, ``memory://``), so ``conf`` is that URL, or a dict
whose ``board`` is one (its other keys go to the board as options). A TaskFlow conf naming only
a kind (``{"board": "zookeeper", "hosts": ...}``) is refused with the URL to write instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from legato import jobboard
from legato.jobboard.base import JobBoard
from legato.taskflow._conf import url_and_options

__all__ = ["backend", "fetch"]


def _url_and_options(conf: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return url_and_options(
        conf, "board", "board", lambda url: "://" in url,
        lambda kind: f"give the board as a URL, not the kind {kind!r} (e.g. "
                     f"'zookeeper://127.0.0.1:2181/legato' or 'redis://127.0.0.1:6379/0'); "
                     f"see docs/migrating-from-taskflow.md")


def fetch(name: str, conf: str | Mapping[str, Any], namespace: str = "legato.jobboards",
          **kwargs: Any) -> JobBoard:
    """The (unconnected) board called ``name`` at the URL ``conf`` gives; ``persistence=`` and
    board options go in ``kwargs``. ``namespace`` is accepted for TaskFlow's signature; boards
    are found by URL scheme in Legato's own entry point group.

    Raises:
        ValueError: ``conf`` gives no board URL.
        UnknownBackend / MissingDriver: see ``legato.jobboard.connect``.
    """
    url, options = _url_and_options(conf)
    options.update(kwargs)
    options.setdefault("name", name)
    return jobboard.connect(url, **options)


@contextlib.contextmanager
def backend(name: str, conf: str | Mapping[str, Any], namespace: str = "legato.jobboards",
            **kwargs: Any) -> Iterator[JobBoard]:
    """``fetch(...)``, connected for the block and closed after it."""
    board = fetch(name, conf, namespace, **kwargs)
    board.connect()
    try:
        yield board
    finally:
        board.close()
