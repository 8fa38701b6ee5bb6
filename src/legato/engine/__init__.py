"""Engines: run flows and record every step in persistence.

``load(flow, ...)`` returns an engine; ``run(flow, ...)`` runs it and returns the stored values.
Engine kinds are plugins (entry point group ``legato.engines``): ``serial``, ``parallel`` and
``process``; a kind may be given as a URL (``"parallel://?max_workers=4"``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from legato import _plugins
from legato.engine.engine import Engine, ParallelEngine, ProcessEngine, SerialEngine
from legato.engine.factories import (
    FactoryPolicy,
    flow_from_detail,
    record_factory,
    save_factory_details,
)
from legato.failure import Failure
from legato.flow.patterns import Flow
from legato.persistence.base import Persistence
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import FlowDetail, LogBook

__all__ = [
    "ENGINES",
    "Engine",
    "FactoryPolicy",
    "Failure",
    "ParallelEngine",
    "ProcessEngine",
    "SerialEngine",
    "engine_class",
    "flow_from_detail",
    "load",
    "load_from_detail",
    "record_factory",
    "run",
    "save_factory_details",
]

ENGINES = _plugins.Family("legato.engines")


def _parse_kind(engine: str) -> tuple[str, dict[str, Any]]:
    if "://" not in engine:
        return engine, {}
    parts = urlsplit(engine)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query):
        options[key] = int(value) if value.isdigit() else value
    return _plugins.scheme_of(engine), options


def engine_class(engine: str) -> type[Engine]:
    """The engine class of an engine kind or URL (``serial``, ``parallel://?max_workers=4``).

    Raises:
        UnknownBackend: no such engine kind (the message lists the known ones).
        MissingDriver: the kind's plugin needs a driver that is not installed.
    """
    kind, _options = _parse_kind(engine)
    cls: type[Engine] = ENGINES.load(kind)
    return cls


def load(flow: Flow, *, store: dict[str, Any] | None = None, engine: str = "serial",
         persistence: Persistence | None = None, flow_detail: FlowDetail | None = None,
         book: LogBook | None = None, **options: Any) -> Engine:
    """Return an engine for ``flow``, not yet run.

    Args:
        flow: the flow to run.
        store: inputs, merged over those stored in the flow detail.
        engine: the engine kind (``serial``, ``parallel``, ``process``), or a URL with options
            (``parallel://?max_workers=4``).
        persistence: where progress is recorded (default: a new ``MemoryPersistence``).
        flow_detail: the flow detail to record into (to resume); default a new one, saved in a
            new logbook (or in ``book``).
        book: the logbook a new flow detail is added to.
        options: engine options (``max_workers``), over those in the URL.

    Raises:
        UnknownBackend: no such engine kind.
    """
    kind, url_options = _parse_kind(engine)
    cls: type[Engine] = ENGINES.load(kind)  # ``engine_class``, the URL parsed once
    url_options.update(options)
    if persistence is None:
        persistence = MemoryPersistence()
    if flow_detail is None:
        flow_detail = FlowDetail(flow.name)
        if book is None:
            book = LogBook(flow.name)
        book.add(flow_detail)
        persistence.save_logbook(book)
    engine_obj: Engine = cls(flow, flow_detail=flow_detail, persistence=persistence,
                             store=store, **url_options)
    return engine_obj


def run(flow: Flow, *, store: dict[str, Any] | None = None, engine: str = "serial",
        persistence: Persistence | None = None, flow_detail: FlowDetail | None = None,
        book: LogBook | None = None, **options: Any) -> dict[str, Any]:
    """Load and run ``flow`` (see ``load``); return every stored value by name (a name with
    several values, from several providers or a provider and an input, maps to their list,
    newest first, as TaskFlow's ``engines.run`` does: ``Storage.fetch_all``).

    Raises:
        the failed task's exception, ``WrappedFailure``, ``StorageFailure``...: see
        ``Engine.run_iter``.
    """
    engine_obj = load(flow, store=store, engine=engine, persistence=persistence,
                      flow_detail=flow_detail, book=book, **options)
    engine_obj.run()
    return engine_obj.storage.fetch_all()


def load_from_detail(flow_detail: FlowDetail, *, store: dict[str, Any] | None = None,
                     engine: str = "serial", persistence: Persistence, policy: FactoryPolicy,
                     **options: Any) -> Engine:
    """Rebuild the flow of ``flow_detail`` through ``policy`` and return an engine for it.

    Raises:
        see ``flow_from_detail`` and ``legato.engine.load``.
    """
    flow = flow_from_detail(flow_detail, policy=policy)
    return load(flow, store=store, engine=engine, persistence=persistence,
                flow_detail=flow_detail, **options)
