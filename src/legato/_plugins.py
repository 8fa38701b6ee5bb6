"""One registry for every plugin family: built-ins plus entry points, chosen by name or URL scheme.

Built-ins are listed as lazy ``"module:attr"`` strings so that importing Legato never imports a
driver. Entry points in the family's group add to (and may override) the built-ins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any
from urllib.parse import urlsplit

from legato import errors

__all__ = ["Family", "scheme_of"]

#: Which extra installs the driver each top-level module name comes from.
_DRIVER_EXTRAS = {
    "psycopg": "postgres",
    "pymysql": "mysql",
    "redis": "redis",
    "kazoo": "zookeeper",
    "sortedcontainers": "zookeeper",
}


def scheme_of(url: str) -> str:
    """Return the plugin name a URL selects: its scheme without any ``+driver`` suffix."""
    if "://" not in url:
        raise errors.UnknownBackend(f"not a URL: {url!r} (expected scheme://...)")
    return urlsplit(url).scheme.split("+", 1)[0].lower()


class Family:
    """A plugin family such as ``legato.jobboards``.

    Args:
        group: the entry point group.
        builtins: name -> ``"module:attr"`` for the plugins that ship with Legato.
    """

    def __init__(self, group: str, builtins: dict[str, str]) -> None:
        self.group = group
        self._builtins = dict(builtins)

    def names(self) -> list[str]:
        """Every known plugin name, sorted."""
        found = set(self._builtins)
        found.update(ep.name for ep in importlib.metadata.entry_points(group=self.group))
        return sorted(found)

    def load(self, name: str) -> Any:
        """Import and return the plugin called ``name``.

        Raises:
            UnknownBackend: no plugin of that name (the message lists the known ones).
            MissingDriver: the plugin's driver is not installed (the message names the extra).
        """
        for ep in importlib.metadata.entry_points(group=self.group, name=name):
            return _guarded(lambda ep=ep: ep.load(), name)
        target = self._builtins.get(name)
        if target is None:
            known = ", ".join(self.names()) or "none"
            raise errors.UnknownBackend(f"unknown {self.group} kind {name!r}; known: {known}")
        module_name, _, attr = target.partition(":")
        return _guarded(lambda: getattr(importlib.import_module(module_name), attr), name)


def _guarded(loader: Any, name: str) -> Any:
    try:
        return loader()
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".", 1)[0]
        extra = _DRIVER_EXTRAS.get(top)
        if extra is None:
            raise
        raise errors.MissingDriver(
            f"the {name!r} backend needs the {top!r} driver: pip install 'legato[{extra}]'",
            extra=extra,
        ) from exc
