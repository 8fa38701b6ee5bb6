"""Optional OpenTelemetry: W3C trace context carried in a job's details, from ``post`` to the
conductor that runs the job (``legato[otel]``).

Only the OpenTelemetry API is used, and never imported here: a process that has not imported
OpenTelemetry (its application set up no tracing) can have no current span and no tracer
provider, so ``loaded()`` is False and every caller skips tracing with one test, at no import
cost. The context travels as
``details["trace"] = {"traceparent": ..., ...}``, written with the configured propagator (W3C
Trace Context by default), so whichever conductor claims the job, first or after a takeover,
continues the producer's trace.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["TRACE_KEY", "extract", "from_environment", "inject", "loaded"]

#: The key of a job's details that holds its trace context.
TRACE_KEY = "trace"
_API = "opentelemetry.trace"


def loaded() -> bool:
    """Whether the OpenTelemetry API was imported in this process (by the application, or by
    a tracer provider handed to a conductor)."""
    return _API in sys.modules


#: A W3C ``traceparent``: version, trace id, parent span id, flags (lower-case hex).
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-"
                          r"[0-9a-f]{2}")


def from_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The trace context a process was handed in its environment (``TRACEPARENT`` and
    ``TRACESTATE``, as shell scripts and CI systems pass it), as a ``TRACE_KEY`` carrier;
    None when there is none. Needs no OpenTelemetry: the conductor that claims the job
    continues the trace.

    Raises:
        ValueError: ``TRACEPARENT`` is not a W3C traceparent, or ``TRACESTATE`` holds
            characters a header cannot.
    """
    parent = environ.get("TRACEPARENT", "").strip()
    if not parent:
        return None
    if not _TRACEPARENT.fullmatch(parent):
        raise ValueError(f"TRACEPARENT is not a W3C traceparent "
                         f"(version-traceid-parentid-flags in hex): {parent[:80]!r}")
    carrier = {"traceparent": parent}
    state = environ.get("TRACESTATE", "").strip()
    if state:
        if len(state) > 512 or not state.isprintable():
            raise ValueError("TRACESTATE is longer than 512 characters or not printable")
        carrier["tracestate"] = state
    return carrier


def inject(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """``details`` plus the current trace context under ``TRACE_KEY`` (a new dict) when a span
    is current and the details carry none yet; else ``details`` unchanged."""
    if not loaded() or (details is not None and TRACE_KEY in details):
        return details
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return details
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return details
    return {**(details or {}), TRACE_KEY: carrier}


def extract(details: Mapping[str, Any]) -> Any:
    """The OpenTelemetry context a job's details carry (an empty one when they carry none or
    something malformed); None when OpenTelemetry was not imported."""
    if not loaded():
        return None
    from opentelemetry import context as otel_context
    from opentelemetry import propagate

    carrier = details.get(TRACE_KEY)
    if not isinstance(carrier, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in carrier.items()):
        return otel_context.Context()
    return propagate.extract(carrier, context=otel_context.Context())
