"""OpenTelemetry spans of a conductor's job runs, and trace context carried from ``post``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.jobboard.base import JobBoard
from legato.persistence.base import Persistence
from legato.testing import conductor as tc


@pytest.fixture
def persistence() -> Persistence:
    return lp.connect("memory://")


@pytest.fixture
def board(persistence: Persistence) -> Iterator[JobBoard]:
    with jb.connect(f"memory://tracing-{uuid.uuid4().hex}", persistence=persistence) as board:
        yield board


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_a_job_run_continues_the_producers_trace(board: JobBoard, persistence: Persistence,
                                                 provider: TracerProvider,
                                                 exporter: InMemorySpanExporter) -> None:
    with provider.get_tracer("producer").start_as_current_span("produce") as produce:
        job = tc.post_job(board, persistence, tc.steps_flow, args=(2,))
    assert job.details["trace"]["traceparent"].split("-")[1] == \
        format(produce.get_span_context().trace_id, "032x")
    conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                  tracer_provider=provider)
    conductor.run(max_dispatches=1)

    spans = exporter.get_finished_spans()
    trace_id = produce.get_span_context().trace_id
    assert {span.context.trace_id for span in spans} == {trace_id}
    [run] = _named(spans, "legato.job")
    assert run.parent is not None and run.parent.span_id == produce.get_span_context().span_id
    assert run.kind is SpanKind.CONSUMER
    assert run.attributes is not None
    assert dict(run.attributes) == {
        "legato.job.id": job.uuid, "legato.job.name": "job",
        "legato.conductor": conductor.conductor.name, "legato.job.attempt": 1,
        "legato.job.fence": run.attributes["legato.job.fence"], "legato.flow.name": "job",
        "legato.job.outcome": "consumed"}
    assert run.status.status_code is StatusCode.UNSET
    children = [s for s in spans if s.parent is not None
                and s.parent.span_id == run.context.span_id]
    assert sorted(s.name for s in children) == ["legato.atom", "legato.atom",
                                                "legato.board.consume", "legato.claim"]
    atoms = {s.attributes["legato.atom.name"]: s for s in _named(spans, "legato.atom")
             if s.attributes is not None}
    assert set(atoms) == {"step-0", "step-1"}
    assert all(s.attributes is not None and s.attributes["legato.atom.state"] == "SUCCESS"
               for s in atoms.values())


def test_errors_are_recorded_on_the_atom_and_the_run(board: JobBoard, persistence: Persistence,
                                                     provider: TracerProvider,
                                                     exporter: InMemorySpanExporter) -> None:
    tc.post_job(board, persistence, tc.failing_flow)
    BlockingConductor("c", board, persistence, wait_timeout=0.05,
                      tracer_provider=provider).run(max_dispatches=1)
    spans = exporter.get_finished_spans()
    assert len({span.context.trace_id for span in spans}) == 1  # no producer: a new trace
    [run] = _named(spans, "legato.job")
    assert run.parent is None
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None
    assert str(run.attributes["legato.job.reason"]).startswith("flow failed")
    [failed] = [s for s in _named(spans, "legato.atom")
                if s.attributes is not None and s.attributes["legato.atom.state"] == "FAILURE"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    reverts = [s for s in _named(spans, "legato.atom")
               if s.attributes is not None and s.attributes["legato.atom.action"] == "revert"]
    assert reverts


def test_no_span_current_no_trace_in_the_details(board: JobBoard,
                                                 persistence: Persistence) -> None:
    job = tc.post_job(board, persistence, tc.steps_flow)
    assert "trace" not in job.details
    assert "trace" not in board.get(job.uuid).details


def test_details_naming_their_own_trace_keep_it(board: JobBoard, provider: TracerProvider) -> None:
    mine = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with provider.get_tracer("producer").start_as_current_span("produce"):
        job = board.post("x", details={"trace": mine})
    assert board.get(job.uuid).details["trace"] == mine


def test_legato_never_imports_opentelemetry_itself() -> None:
    """Tracing costs nothing in a process whose application set none up: not even the
    import (posting and running a job included)."""
    import subprocess
    import sys

    code = (
        "import sys, uuid\n"
        "from legato import jobboard as jb, persistence as lp\n"
        "from legato.conductor import BlockingConductor\n"
        "from legato.testing import conductor as tc\n"
        "import legato.cli.main\n"
        "p = lp.connect('memory://')\n"
        "with jb.connect(f'memory://{uuid.uuid4().hex}', persistence=p) as board:\n"
        "    tc.post_job(board, p, tc.steps_flow)\n"
        "    BlockingConductor('c', board, p, wait_timeout=0.05).run(max_dispatches=1)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"
