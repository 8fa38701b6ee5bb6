"""Rebuild flows from flow details, safely.

``save_factory_details`` records in ``flow_detail.meta["factory"]`` how to rebuild a flow:
``{"name": "<module>:<qualname>", "args": [...], "kwargs": {...}}``. Because that record may come
from anyone able to post a job, ``flow_from_detail`` never imports a name blindly: a
``FactoryPolicy`` allows only registered factories (``@legato.flow_factory`` or the
``legato.flow_factories`` entry point group) and factories in modules under prefixes the
operator allowed; anything else raises ``DisallowedFactory`` before any import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.flow.factory import factory_name, registered_factory
from legato.flow.patterns import Flow
from legato.persistence.models import FlowDetail

if TYPE_CHECKING:
    from legato.engine.engine import Engine
    from legato.persistence.base import Persistence

__all__ = [
    "ENTRY_POINT_GROUP",
    "FactoryPolicy",
    "flow_from_detail",
    "load_from_detail",
    "save_factory_details",
]

ENTRY_POINT_GROUP = "legato.flow_factories"


def _resolve(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _check_name(name: str) -> None:
    module_name, sep, qualname = name.partition(":")
    if not sep or not module_name or not qualname or "<" in name:
        raise ValueError(f"not a factory name of the form 'module:qualname': {name!r}")


def save_factory_details(flow_detail: FlowDetail, factory: Callable[..., Flow],
                         args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                         persistence: Persistence) -> FlowDetail:
    """Record ``factory`` (and its JSON arguments) in ``flow_detail.meta["factory"]`` and save.

    Raises:
        ValueError: the factory cannot be found again by name (a lambda, a local function, a
            bound method), or its arguments are not JSON.
    """
    if not callable(factory) or (getattr(factory, "__self__", None) is not None and not \
            isinstance(getattr(factory, "__self__", None), type)):
        raise ValueError(f"{factory!r}: a factory must be a module-level function")
    name = factory_name(factory)
    _check_name(name)
    try:
        found = _resolve(name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"factory {name} cannot be found again by name: {exc}") from exc
    if found is not factory:
        raise ValueError(f"factory {name} does not resolve back to {factory!r}")
    record = {"name": name, "args": list(args), "kwargs": dict(kwargs or {})}
    try:
        json.dumps(record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"factory arguments must be JSON: {exc}") from exc
    flow_detail.meta["factory"] = record
    persistence.update_flow_details(FlowDetail(flow_detail.name, flow_detail.uuid,
                                               flow_detail.state, flow_detail.meta))
    return flow_detail


class FactoryPolicy:
    """Decides which factory names may be imported and called.

    A name is allowed if it is registered in this process (``@legato.flow_factory``), or named
    by an entry point of the ``legato.flow_factories`` group (loading it registers it), or its
    module is one of ``allowed_prefixes`` or inside one (``"myapp.flows"`` allows
    ``"myapp.flows.billing:make"`` but not ``"myapp.flowsevil:make"``).

    Args:
        allowed_prefixes: dotted module prefixes whose factories are allowed.
    """

    def __init__(self, allowed_prefixes: Iterable[str] = ()) -> None:
        self.allowed_prefixes = tuple(p.strip().rstrip(".") for p in allowed_prefixes
                                      if p.strip())

    def is_allowed_module(self, module_name: str) -> bool:
        return any(module_name == p or module_name.startswith(p + ".")
                   for p in self.allowed_prefixes)

    def resolve(self, name: str) -> Callable[..., Flow]:
        """Return the factory called ``name``.

        Raises:
            ValueError: ``name`` is not of the form ``module:qualname``.
            DisallowedFactory: neither registered nor under an allowed prefix (nothing was
                imported).
            NotFound: allowed, but the module or attribute does not exist.
        """
        _check_name(name)
        registered = registered_factory(name)
        if registered is not None:
            return registered
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.value.replace(" ", "") == name:
                loaded: Callable[..., Flow] = ep.load()
                return loaded
        module_name = name.partition(":")[0]
        if not self.is_allowed_module(module_name):
            raise errors.DisallowedFactory(
                f"flow factory {name!r} is not registered and not under an allowed prefix "
                f"({', '.join(self.allowed_prefixes) or 'none allowed'})", factory_name=name)
        try:
            found = _resolve(name)
        except (ImportError, AttributeError) as exc:
            raise errors.NotFound(f"flow factory {name!r} cannot be imported: {exc}") from exc
        if not callable(found):
            raise errors.NotFound(f"flow factory {name!r} is not callable")
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


def load_from_detail(flow_detail: FlowDetail, *, store: dict[str, Any] | None = None,
                     engine: str = "serial", persistence: Persistence, policy: FactoryPolicy,
                     **options: Any) -> Engine:
    """Rebuild the flow of ``flow_detail`` through ``policy`` and return an engine for it.

    Raises:
        see ``flow_from_detail`` and ``legato.engine.load``.
    """
    from legato.engine import load

    flow = flow_from_detail(flow_detail, policy=policy)
    return load(flow, store=store, engine=engine, persistence=persistence,
                flow_detail=flow_detail, **options)
