"""Optional OpenTelemetry: W3C trace context carried in a job's details, from ``post`` to the
conductor that runs the job (``legato[otel]``).

Only the OpenTelemetry API is used, imported once here: without the package installed
``AVAILABLE`` is False and every caller skips tracing with one test. The context travels as
``details["trace"] = {"traceparent": ..., ...}``, written with the configured propagator (W3C
Trace Context by default), so whichever conductor claims the job, first or after a takeover,
continues the producer's trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - the [otel] extra is not installed
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "TRACE_KEY", "extract", "inject"]

#: The key of a job's details that holds its trace context.
TRACE_KEY = "trace"


def inject(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """``details`` plus the current trace context under ``TRACE_KEY`` (a new dict) when a span
    is current and the details carry none yet; else ``details`` unchanged."""
    if not AVAILABLE or (details is not None and TRACE_KEY in details):
        return details
    if not trace.get_current_span().get_span_context().is_valid:
        return details
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return details
    return {**(details or {}), TRACE_KEY: carrier}


def extract(details: Mapping[str, Any]) -> Any:
    """The OpenTelemetry context a job's details carry (an empty one when they carry none or
    something malformed); None without OpenTelemetry."""
    if not AVAILABLE:
        return None
    carrier = details.get(TRACE_KEY)
    if not isinstance(carrier, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in carrier.items()):
        return otel_context.Context()
    return propagate.extract(carrier, context=otel_context.Context())
