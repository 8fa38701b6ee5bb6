"""``legato conductor --trace-file``: finished spans written as JSON lines (``legato[otel]``).

A debugging aid, and how tests read the spans of a conductor process. In production, give the
process a tracer provider of your own (``opentelemetry-instrument legato conductor ...`` with
the OpenTelemetry distro and an exporter): conductors use the global one when it is set.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["file_tracer_provider"]


def file_tracer_provider(path: str) -> Any:
    """A tracer provider that appends every finished span to ``path``, one JSON object per
    line, as it ends (so a process killed later has written what it finished)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        raise ImportError("--trace-file needs OpenTelemetry: pip install 'legato[otel]'"
                          ) from None

    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed on shutdown)
    lock = threading.Lock()

    class JSONLinesExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with lock:
                for span in spans:
                    stream.write(span.to_json(indent=None) + "\n")
                stream.flush()
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            with lock:
                stream.close()

    provider = TracerProvider(resource=Resource.create({"service.name": "legato-conductor"}))
    provider.add_span_processor(SimpleSpanProcessor(JSONLinesExporter()))
    return provider
