"""Optional Prometheus metrics for conductors, registered on a registry the caller passes in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["ConductorMetrics"]


class ConductorMetrics:
    """Job counters and a job-duration histogram; share one object between conductors.

    Args:
        registry: where the metrics are registered (never the process-wide default unless
            you pass it).
        prefix: metric name prefix.

    Metrics: ``<prefix>_jobs_total{outcome="consumed|abandoned|trashed"}``,
    ``<prefix>_board_errors_total`` and ``<prefix>_job_duration_seconds`` (claim to finish).
    """

    def __init__(self, registry: CollectorRegistry, *, prefix: str = "legato_conductor") -> None:
        self.jobs = Counter(f"{prefix}_jobs", "Jobs finished by conductors, by outcome.",
                            labelnames=("outcome",), registry=registry)
        self.board_errors = Counter(f"{prefix}_board_errors",
                                    "Jobboard errors conductors logged and retried.",
                                    registry=registry)
        self.duration = Histogram(f"{prefix}_job_duration_seconds",
                                  "Seconds from claiming a job to finishing it.",
                                  registry=registry)
