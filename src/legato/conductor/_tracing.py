"""OpenTelemetry spans for conductors: one per job run, with the claim, each atom and the board
call that finishes the job as children (``legato[otel]``; API only).

A job run's span continues the trace its details carry (``legato._tracing``): the producer's,
whichever conductor claims the job. Spans:

* ``legato.job`` (kind CONSUMER): from the claim to the end of the run. Attributes
  ``legato.job.id``, ``legato.job.name``, ``legato.conductor`` (the claim's owner),
  ``legato.job.fence``, ``legato.job.attempt``, ``legato.flow.name``, and at the end
  ``legato.job.outcome`` and ``legato.job.reason``; status ERROR unless the job was consumed
  with no reason (a failed flow, an abandon, a trash).
* ``legato.claim``: from the ``claim_next`` call that got the job to the start of its run.
* ``legato.atom``: each task or retry's execution or revert (``legato.atom.name``,
  ``legato.atom.action``, ``legato.atom.state``); a failure is recorded as an exception.
* ``legato.board.consume`` / ``.abandon`` / ``.trash`` / ``.release``: each finishing call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from legato import _tracing
from legato.conductor._job import Action

if TYPE_CHECKING:
    from legato.conductor._job import Outcome
    from legato.conductor._renewal import Lease

__all__ = ["JobTracing"]

_CALLS = {Action.CONSUME: "legato.board.consume", Action.ABANDON: "legato.board.abandon",
          Action.TRASH: "legato.board.trash", Action.RELEASE: "legato.board.release"}
_OUTCOME = {Action.CONSUME: "consumed", Action.ABANDON: "abandoned", Action.TRASH: "trashed",
            Action.RELEASE: "released"}
_ENDS = frozenset({"SUCCESS", "FAILURE", "REVERTED", "REVERT_FAILURE"})


class JobTracing:
    """The spans of one conductor's job runs, on ``tracer``.

    Use ``create``: it gives None when no tracer provider was given or set globally (the API's
    default would record nothing; a process that never imported OpenTelemetry has none), so
    that the conductor then pays one ``if`` per job.
    """

    def __init__(self, tracer: Any, owner: str) -> None:
        from opentelemetry import trace

        self.trace = trace
        self.tracer = tracer
        self.owner = owner
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, int | None], Any] = {}

    @classmethod
    def create(cls, provider: Any, owner: str) -> JobTracing | None:
        """Tracing on ``provider`` (the global tracer provider when None), or None."""
        if provider is None:
            if not _tracing.loaded():
                return None
            from opentelemetry import trace

            provider = trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
                return None
        from legato import __version__

        return cls(provider.get_tracer("legato.conductor", __version__), owner)

    # -- a job run -------------------------------------------------------------------------

    def start_job(self, lease: Lease, claimed_at: float) -> Any:
        """Start ``lease``'s run span (backdated to ``claimed_at``, a ``time.monotonic()``
        value) and its claim span; returns the run span."""
        job = lease.job
        start = time.time_ns() - int((time.monotonic() - claimed_at) * 1e9)
        attributes = {"legato.job.id": job.uuid, "legato.job.name": job.name,
                      "legato.conductor": self.owner, "legato.job.attempt": job.attempts}
        if job.fence is not None:
            attributes["legato.job.fence"] = job.fence
        span = self.tracer.start_span("legato.job", context=_tracing.extract(job.details),
                                      kind=self.trace.SpanKind.CONSUMER, start_time=start,
                                      attributes=attributes)
        self.tracer.start_span("legato.claim", context=self.trace.set_span_in_context(span),
                               start_time=start, attributes=attributes).end()
        with self._lock:
            self._runs[lease.key] = span
        return span

    def end_job(self, lease: Lease, span: Any, outcome: Outcome) -> None:
        with self._lock:
            self._runs.pop(lease.key, None)
        span.set_attribute("legato.job.outcome", _OUTCOME[outcome.action])
        if outcome.reason:
            span.set_attribute("legato.job.reason", outcome.reason)
        if outcome.action is not Action.CONSUME or outcome.reason:
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, outcome.reason))
        span.end()

    def running(self, event: str, details: dict[str, Any]) -> None:
        """Conductor ``running_start`` listener: span the engine's atoms under the job's run."""
        job, engine = details.get("job"), details.get("engine")
        if job is None or engine is None:
            return
        with self._lock:
            span = self._runs.get((job.uuid, job.fence))
        if span is None:
            return
        span.set_attribute("legato.flow.name", engine.flow_detail.name)
        engine.atom_notifier.register("*", _AtomSpans(self.tracer,
                                                      self.trace.set_span_in_context(span)))

    def board_call(self, lease: Lease, action: Action, call: Callable[[], None]
                   ) -> Callable[[], None]:
        """``call`` (a finishing board call for ``lease``'s job) made inside a span."""
        with self._lock:
            span = self._runs.get(lease.key)
        parent = (self.trace.set_span_in_context(span) if span is not None
                  else _tracing.extract(lease.job.details))
        name = _CALLS[action]
        attributes = {"legato.job.id": lease.job.uuid, "legato.conductor": self.owner}

        def traced() -> None:
            with self.tracer.start_as_current_span(name, context=parent,
                                                   attributes=attributes):
                call()

        return traced


class _AtomSpans:
    """Engine atom listener: one span per atom execution or revert."""

    __slots__ = ("parent", "spans", "tracer")

    def __init__(self, tracer: Any, parent: Any) -> None:
        self.tracer = tracer
        self.parent = parent
        self.spans: dict[str, Any] = {}

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        if event in ("RUNNING", "REVERTING"):
            self.spans[details["atom_uuid"]] = self.tracer.start_span(
                "legato.atom", context=self.parent, attributes={
                    "legato.atom.name": details["atom_name"],
                    "legato.flow.name": details.get("flow_name", ""),
                    "legato.atom.action": "execute" if event == "RUNNING" else "revert"})
        elif event in _ENDS:
            span = self.spans.pop(details["atom_uuid"], None)
            if span is None:
                return
            span.set_attribute("legato.atom.state", event)
            failure = details.get("failure")
            if failure is not None:
                if failure.exception is not None:
                    span.record_exception(failure.exception)
                else:
                    span.add_event("exception", {"exception.type": failure.exception_type_name,
                                                 "exception.message": failure.message})
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, failure.message))
            span.end()
