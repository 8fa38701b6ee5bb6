"""The in-process registry of flow factories (``@legato.flow_factory``).

A factory is a module-level function returning a flow. Jobs name factories as
``"module:qualname"``; an engine rebuilds a flow only from a registered factory or one under a
module prefix the operator allowed (see ``legato.engine.factories.FactoryPolicy``). Registering
a factory here makes it allowed in this process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["factory_name", "flow_factory", "registered_factories", "registered_factory"]

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_registry: dict[str, Callable[..., Any]] = {}


def factory_name(fn: Callable[..., Any]) -> str:
    """``"module:qualname"`` of a function."""
    return f"{fn.__module__}:{fn.__qualname__}"


def flow_factory(fn: F) -> F:
    """Register ``fn`` as a flow factory that jobs may name; return it unchanged."""
    name = factory_name(fn)
    if "<" in name:
        raise ValueError(f"{name}: only module-level functions can be flow factories")
    with _lock:
        _registry[name] = fn
    return fn


def registered_factories() -> dict[str, Callable[..., Any]]:
    """A copy of the registry: ``{"module:qualname": factory}``."""
    with _lock:
        return dict(_registry)


def registered_factory(name: str) -> Callable[..., Any] | None:
    """The factory registered as ``name`` (``"module:qualname"``), or None."""
    with _lock:
        return _registry.get(name)
