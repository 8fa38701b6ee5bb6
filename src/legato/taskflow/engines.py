"""``taskflow.engines``: ``load``, ``run``, ``save_factory_details``, ``load_from_factory``,
``flow_from_detail`` and ``load_from_detail``, with TaskFlow's arguments.

``backend`` is a Legato ``Persistence`` or a TaskFlow persistence conf (a URL, or a dict with a
``connection`` URL); ``engine="default"`` is Legato's ``serial`` engine. Rebuilding a flow from
its detail goes through a ``FactoryPolicy`` (by default: registered factories only) — the one
place where TaskFlow imported whatever name a flow detail held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from legato import engine as _engine
from legato.engine.engine import Engine
from legato.engine.factories import FactoryPolicy
from legato.flow.patterns import Flow
from legato.persistence.base import Persistence
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import FlowDetail, LogBook
from legato.taskflow.persistence import backends

__all__ = [
    "flow_from_detail",
    "load",
    "load_from_detail",
    "load_from_factory",
    "run",
    "save_factory_details",
]

Backend = Persistence | str | Mapping[str, Any] | None


def _persistence(backend: Backend) -> Persistence | None:
    if backend is None or isinstance(backend, Persistence):
        return backend
    return backends.fetch(backend)


def _kind(engine: str) -> str:
    return "serial" if engine == "default" else engine


def load(flow: Flow, store: dict[str, Any] | None = None, flow_detail: FlowDetail | None = None,
         book: LogBook | None = None, backend: Backend = None,
         namespace: str = "legato.engines", engine: str = "default",
         **kwargs: Any) -> Engine:
    """``legato.engine.load`` with TaskFlow's argument names."""
    return _engine.load(flow, store=store, engine=_kind(engine),
                        persistence=_persistence(backend), flow_detail=flow_detail, book=book,
                        **kwargs)


def run(flow: Flow, store: dict[str, Any] | None = None, flow_detail: FlowDetail | None = None,
        book: LogBook | None = None, backend: Backend = None,
        namespace: str = "legato.engines", engine: str = "default",
        **kwargs: Any) -> dict[str, Any]:
    """Load and run ``flow``; return every stored value by name (``legato.engine.run``)."""
    return _engine.run(flow, store=store, engine=_kind(engine),
                       persistence=_persistence(backend), flow_detail=flow_detail, book=book,
                       **kwargs)


def save_factory_details(flow_detail: FlowDetail, flow_factory: Callable[..., Flow],
                         factory_args: Sequence[Any] | None = None,
                         factory_kwargs: dict[str, Any] | None = None,
                         backend: Backend = None) -> FlowDetail:
    """Record how to rebuild the flow in ``flow_detail`` and save it through ``backend``.

    A conductor rebuilds it only if ``flow_factory`` is registered
    (``@legato.flow_factory``) or allowed by its ``FactoryPolicy``.

    Raises:
        TypeError: no ``backend`` (Legato records factory details durably, or not at all).
        ValueError: see ``legato.engine.save_factory_details``.
    """
    store = _persistence(backend)
    if store is None:
        raise TypeError("save_factory_details needs backend=: the persistence the flow detail "
                        "is saved in")
    return _engine.save_factory_details(flow_detail, flow_factory, factory_args or (),
                                        factory_kwargs, persistence=store)


def load_from_factory(flow_factory: Callable[..., Flow], factory_args: Sequence[Any] | None = None,
                      factory_kwargs: dict[str, Any] | None = None,
                      store: dict[str, Any] | None = None, book: LogBook | None = None,
                      backend: Backend = None, namespace: str = "legato.engines",
                      engine: str = "default", **kwargs: Any) -> Engine:
    """Build the flow from ``flow_factory``, record the factory in a new flow detail (in
    ``book``, or a new logbook) and return an engine for it."""
    persistence = _persistence(backend) or MemoryPersistence()
    flow = flow_factory(*(factory_args or ()), **(factory_kwargs or {}))
    flow_detail = FlowDetail(flow.name)
    book = book if book is not None else LogBook(flow.name)
    book.add(flow_detail)
    persistence.save_logbook(book)
    _engine.save_factory_details(flow_detail, flow_factory, factory_args or (), factory_kwargs,
                                 persistence=persistence)
    return load(flow, store=store, flow_detail=flow_detail, book=book, backend=persistence,
                engine=engine, **kwargs)


def flow_from_detail(flow_detail: FlowDetail, policy: FactoryPolicy | None = None) -> Flow:
    """Rebuild the flow recorded in ``flow_detail`` (registered factories only, unless
    ``policy`` allows more)."""
    return _engine.flow_from_detail(flow_detail, policy=policy or FactoryPolicy())


def load_from_detail(flow_detail: FlowDetail, store: dict[str, Any] | None = None,
                     backend: Backend = None, namespace: str = "legato.engines",
                     engine: str = "default", policy: FactoryPolicy | None = None,
                     **kwargs: Any) -> Engine:
    """Rebuild the flow of ``flow_detail`` and return an engine that resumes it."""
    flow = flow_from_detail(flow_detail, policy)
    return load(flow, store=store, flow_detail=flow_detail, backend=backend, engine=engine,
                **kwargs)
