"""Rebuild flows from flow details, safely.

``save_factory_details`` records in ``flow_detail.meta["factory"]`` how to rebuild a flow:
``{"name": "<module>:<qualname>", "args": [...], "kwargs": {...}}``. Because that record may come
from anyone able to post a job, ``flow_from_detail`` never imports a name blindly: a
``FactoryPolicy`` allows only registered factories (``@legato.flow_factory`` or the
``legato.flow_factories`` entry point group), importing for that only modules under prefixes
the operator allowed; anything else raises ``DisallowedFactory`` before any import. A name
never walks attributes (``module:os.system`` is refused), and only a plain function defined in
the named module under that name is ever called.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.flow.factory import factory_name, registered_factory
from legato.flow.patterns import Flow
from legato.persistence.models import FlowDetail

if TYPE_CHECKING:
    from legato.persistence.base import Persistence

__all__ = [
    "ENTRY_POINT_GROUP",
    "FactoryPolicy",
    "flow_from_detail",
    "record_factory",
    "save_factory_details",
]

ENTRY_POINT_GROUP = "legato.flow_factories"


@functools.lru_cache(maxsize=256)
def _check_name(name: str) -> tuple[str, str]:
    """``(module, function)`` of ``name``, which must be ``"dotted.module:function"``.

    The part after the colon is one identifier: a name never walks attributes, so it can
    reach only what its module itself defines at top level. Cached (every post and every
    claim checks its job's name; a refused name raises each time, never cached).
    """
    module_name, sep, qualname = name.partition(":")
    if not sep or not qualname.isidentifier() or not all(
            part.isidentifier() for part in module_name.split(".")):
        raise ValueError(f"not a factory name of the form 'module:function' (one identifier "
                         f"after the colon): {name!r}")
    return module_name, qualname


def _defined_as(found: object, module_name: str, qualname: str) -> bool:
    """Whether ``found`` is a plain function defined in ``module_name`` as ``qualname`` (not a
    class, builtin, bound method, callable object, or a function imported from elsewhere)."""
    return (inspect.isfunction(found) and found.__module__ == module_name
            and found.__qualname__ == qualname)


def _module_attribute(module_name: str, qualname: str) -> Any:
    """``module.qualname``, one level only (imports the module)."""
    module = importlib.import_module(module_name)
    return module.__dict__.get(qualname)


def record_factory(flow_detail: FlowDetail, factory: Callable[..., Flow],
                   args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> FlowDetail:
    """Record ``factory`` (and its JSON arguments) in ``flow_detail.meta["factory"]``, unsaved.

    For a flow detail not saved yet: the record then rides on the save that creates it (one
    write where ``save_factory_details`` after a save would make two).

    Raises:
        ValueError: the factory is not a plain module-level function that can be found again
            by name (a lambda, a local function, a method, a class), or its arguments are not
            JSON.
    """
    if not callable(factory) or (getattr(factory, "__self__", None) is not None and not \
            isinstance(getattr(factory, "__self__", None), type)):
        raise ValueError(f"{factory!r}: a factory must be a module-level function")
    name = factory_name(factory)
    module_name, qualname = _check_name(name)
    # The factory exists, so its module ran at least to its definition: when imported, no
    # need to go through the import machinery to look it up.
    module = sys.modules.get(module_name)
    try:
        found = (module.__dict__.get(qualname) if module is not None
                 else _module_attribute(module_name, qualname))
    except ImportError as exc:
        raise ValueError(f"factory {name} cannot be found again by name: {exc}") from exc
    if found is not factory or not _defined_as(found, module_name, qualname):
        raise ValueError(f"factory {name} does not resolve back to {factory!r}")
    record = {"name": name, "args": list(args), "kwargs": dict(kwargs or {})}
    try:
        json.dumps(record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"factory arguments must be JSON: {exc}") from exc
    flow_detail.meta["factory"] = record
    return flow_detail


def save_factory_details(flow_detail: FlowDetail, factory: Callable[..., Flow],
                         args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                         persistence: Persistence) -> FlowDetail:
    """Record ``factory`` (and its JSON arguments) in ``flow_detail.meta["factory"]`` and save
    the flow detail (saved already; before its first save, ``record_factory`` saves a write).

    Raises:
        ValueError: as for ``record_factory``.
    """
    record_factory(flow_detail, factory, args, kwargs)
    persistence.update_flow_details(FlowDetail(flow_detail.name, flow_detail.uuid,
                                               flow_detail.state, flow_detail.meta))
    return flow_detail


class FactoryPolicy:
    """Decides which factory names may be imported and called.

    A name is ``"module:function"``: one identifier after the colon, never a dotted path, so
    it cannot walk into objects the module imports (``mod:os.system``). Only a plain function
    (not a class, builtin, method or callable object) whose ``__module__`` and ``__qualname__``
    are exactly that name is ever called, and only if it is

    - registered in this process (``@legato.flow_factory``), or
    - named by an entry point of the ``legato.flow_factories`` group (the loaded object is
      checked the same way), or
    - registered by its module once imported, when the module is one of
      ``allowed_prefixes`` or inside one (``"myapp.flows"`` allows ``"myapp.flows.billing:make"``
      but not ``"myapp.flowsevil:make"``). An allowed prefix lets the policy *import* the
      module, so that its ``@legato.flow_factory`` decorators run; it does not make every
      function of the module a factory.

    Modules outside the allowed prefixes are never imported; nothing is called before every
    check passed.

    Args:
        allowed_prefixes: dotted module prefixes whose modules may be imported to find their
            registered factories.
    """

    def __init__(self, allowed_prefixes: Iterable[str] = ()) -> None:
        self.allowed_prefixes = tuple(p.strip().rstrip(".") for p in allowed_prefixes
                                      if p.strip())

    def is_allowed_module(self, module_name: str) -> bool:
        return any(module_name == p or module_name.startswith(p + ".")
                   for p in self.allowed_prefixes)

    def resolve(self, name: str) -> Callable[..., Flow]:
        """Return the factory called ``name`` (without calling it).

        Raises:
            ValueError: ``name`` is not of the form ``module:function``.
            DisallowedFactory: not a registered function defined in its module as ``name``
                (nothing was imported unless the module is under an allowed prefix or named by
                an entry point).
            NotFound: allowed, but the module or the function does not exist.
        """
        try:
            module_name, qualname = _check_name(name)
        except ValueError as exc:
            if ":" not in name:
                raise
            raise errors.DisallowedFactory(str(exc), factory_name=name) from exc
        registered = registered_factory(name)
        if registered is not None:
            return self._checked(registered, name, module_name, qualname)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.value.replace(" ", "") == name:
                try:
                    loaded = ep.load()
                except (ImportError, AttributeError) as exc:
                    raise errors.NotFound(f"flow factory {name!r} (entry point {ep.name}) "
                                          f"cannot be loaded: {exc}") from exc
                return self._checked(loaded, name, module_name, qualname)
        if not self.is_allowed_module(module_name):
            raise errors.DisallowedFactory(
                f"flow factory {name!r} is not registered and not under an allowed prefix "
                f"({', '.join(self.allowed_prefixes) or 'none allowed'})", factory_name=name)
        try:
            found = _module_attribute(module_name, qualname)
        except ImportError as exc:
            raise errors.NotFound(f"flow factory {name!r} cannot be imported: {exc}") from exc
        registered = registered_factory(name)  # importing ran the module's decorators
        if registered is not None:
            return self._checked(registered, name, module_name, qualname)
        if found is None:
            raise errors.NotFound(f"flow factory {name!r}: module {module_name} has no "
                                  f"{qualname!r}")
        raise errors.DisallowedFactory(
            f"flow factory {name!r} is not registered: decorate it with @legato.flow_factory "
            "(an allowed prefix only lets its module be imported)", factory_name=name)

    @staticmethod
    def _checked(found: Any, name: str, module_name: str,
                 qualname: str) -> Callable[..., Flow]:
        if not _defined_as(found, module_name, qualname):
            raise errors.DisallowedFactory(
                f"flow factory {name!r} is {found!r}, not a function defined as {qualname} in "
                f"{module_name}", factory_name=name)
        return found  # type: ignore[no-any-return]


def flow_from_detail(flow_detail: FlowDetail, *, policy: FactoryPolicy) -> Flow:
    """Rebuild the flow recorded in ``flow_detail.meta["factory"]``.

    Raises:
        NotFound: the flow detail records no factory, or the factory does not exist.
        ValueError: the record is malformed (not a dict, bad name, args not a list...).
        DisallowedFactory: the policy refuses the factory (nothing was imported).
    """
    record = flow_detail.meta.get("factory")
    if record is None:
        raise errors.NotFound(f"flow detail {flow_detail.uuid} records no factory")
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise ValueError(f"flow detail {flow_detail.uuid}: malformed factory record {record!r}")
    args, kwargs = record.get("args") or [], record.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(f"flow detail {flow_detail.uuid}: factory args must be a list and "
                         "kwargs a dict")
    factory = policy.resolve(record["name"])
    flow = factory(*args, **kwargs)
    if not isinstance(flow, Flow):
        raise ValueError(f"factory {record['name']} returned {flow!r}, not a flow")
    return flow
