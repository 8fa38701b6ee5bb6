"""``taskflow.persistence.backends``: ``fetch(conf)`` and ``backend(conf)``.

``conf`` is what TaskFlow takes: a URL, or a dict whose ``connection`` is one; the dict's other
keys go to the backend as options. The backend returned is Legato's ``Persistence``, which also
has TaskFlow's ``get_connection()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from legato import persistence
from legato.persistence.base import Persistence
from legato.taskflow._conf import url_and_options

__all__ = ["backend", "fetch"]


def _url_and_options(conf: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return url_and_options(
        conf, "connection", "persistence", bool,
        lambda _: "persistence conf needs a 'connection' URL (e.g. "
                  "{'connection': 'sqlite:///flows.db'})")


def fetch(conf: str | Mapping[str, Any], namespace: str = "legato.persistence",
          **kwargs: Any) -> Persistence:
    """The persistence backend for ``conf`` (not upgraded: call ``get_connection().upgrade()``
    or ``upgrade()``). ``namespace`` is accepted for TaskFlow's signature; backends are found by
    URL scheme in Legato's own entry point group.

    Raises:
        ValueError: ``conf`` names no connection URL.
        UnknownBackend / MissingDriver: see ``legato.persistence.connect``.
    """
    url, options = _url_and_options(conf)
    options.update(kwargs)
    return persistence.connect(url, **options)


@contextlib.contextmanager
def backend(conf: str | Mapping[str, Any], namespace: str = "legato.persistence",
            **kwargs: Any) -> Iterator[Persistence]:
    """``fetch(conf)``, closed when the block ends."""
    store = fetch(conf, namespace, **kwargs)
    try:
        yield store
    finally:
        store.close()
