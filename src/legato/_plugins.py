"""Every plugin family: the plugins that ship with Legato, plus entry points, by name or URL scheme.

``BUILTINS`` is the one list of the plugins Legato ships: pyproject.toml's entry points say the
same (``tests/unit/test_plugins.py`` checks both ways and prints ``entry_points_toml()`` when
they differ). Built-ins are lazy ``"module:attr"`` strings, so importing Legato never imports a
driver. A built-in name always means the built-in; entry points in a family's group add plugins
of other names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any
from urllib.parse import urlsplit

from legato import errors

__all__ = ["BUILTINS", "Family", "entry_points_toml", "scheme_of"]

#: Entry point group -> plugin name -> ``"module:attr"``, for every plugin Legato ships.
BUILTINS: dict[str, dict[str, str]] = {
    "legato.conductors": {
        "blocking": "legato.conductor.blocking:BlockingConductor",
        "nonblocking": "legato.conductor.nonblocking:NonBlockingConductor",
    },
    "legato.engines": {
        "serial": "legato.engine.engine:SerialEngine",
        "parallel": "legato.engine.engine:ParallelEngine",
        "process": "legato.engine.engine:ProcessEngine",
    },
    "legato.persistence": {
        "memory": "legato.persistence.memory:MemoryPersistence",
        "sqlite": "legato.persistence.sql:SQLPersistence",
        "postgresql": "legato.persistence.sql:SQLPersistence",
        "postgres": "legato.persistence.sql:SQLPersistence",
        "mysql": "legato.persistence.sql:SQLPersistence",
        "mariadb": "legato.persistence.sql:SQLPersistence",
    },
    "legato.jobboards": {
        "memory": "legato.jobboard.memory:MemoryJobBoard",
        "sqlite": "legato.jobboard.sql:SQLJobBoard",
        "postgresql": "legato.jobboard.sql:SQLJobBoard",
        "postgres": "legato.jobboard.sql:SQLJobBoard",
        "redis": "legato.jobboard.redis:RedisJobBoard",
        "rediss": "legato.jobboard.redis:RedisJobBoard",
        "zookeeper": "legato.jobboard.zookeeper:ZooKeeperJobBoard",
    },
}

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
        group: the entry point group; its built-ins are ``BUILTINS[group]`` (none for a group
            Legato ships nothing in).
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._builtins = dict(BUILTINS.get(group, {}))
        # Built-in plugins loaded, by name: a conductor resolves its engine kind for every
        # job, and an import each time costs more than the lookup. (Entry points are looked
        # up each time: they may come and go.)
        self._loaded: dict[str, Any] = {}

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
        if name in self._loaded:
            return self._loaded[name]
        target = self._builtins.get(name)
        if target is not None:
            module_name, _, attr = target.partition(":")
            loaded = _guarded(lambda: getattr(importlib.import_module(module_name), attr), name)
            self._loaded[name] = loaded
            return loaded
        for ep in importlib.metadata.entry_points(group=self.group, name=name):
            return _guarded(lambda ep=ep: ep.load(), name)
        known = ", ".join(self.names()) or "none"
        raise errors.UnknownBackend(f"unknown {self.group} kind {name!r}; known: {known}")


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


def entry_points_toml() -> str:
    """pyproject.toml's entry point tables for ``BUILTINS``."""
    lines = []
    for group, plugins in BUILTINS.items():
        lines.append(f'[project.entry-points."{group}"]')
        lines += [f'{name} = "{target}"' for name, target in plugins.items()]
        lines.append("")
    return "\n".join(lines)
