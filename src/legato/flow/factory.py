"""The in-process registry of flow factories (``@legato.flow_factory``).

A factory is a plain module-level function returning a flow. Jobs name factories as
``"module:function"``; an engine rebuilds a flow only from a registered factory or one under a
module prefix the operator allowed (see ``legato.engine.factories.FactoryPolicy``). Registering
a factory here makes it allowed in this process.
"""

from __future__ import annotations

import inspect
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
    """Register ``fn`` as a flow factory that jobs may name; return it unchanged.

    Raises:
        ValueError: ``fn`` is not a plain function defined at the top level of its module (a
            class, builtin, method, callable object, local or nested function): a factory name
            is ``"module:function"`` and never walks attributes.
    """
    if not inspect.isfunction(fn) or not fn.__qualname__.isidentifier():
        raise ValueError(f"{fn!r}: only module-level functions can be flow factories")
    name = factory_name(fn)
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
