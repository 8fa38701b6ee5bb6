"""Optional Prometheus metrics for conductors, registered on a registry the caller passes in.

Counters come from the conductors' own ``statistics`` (kept anyway), read when the registry is
collected (a scrape), so they cost a job nothing; a job costs two histogram observations, and
one per atom. The board gauges are read at collection too, from the board's ``job_counts``
(counts the backend keeps), at most once every ``refresh`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from legato.jobboard.base import JobBoard, JobCounts

__all__ = ["BoardGauges", "ConductorMetrics", "Tracked"]


class Tracked(Protocol):
    """What the metrics read from a conductor (an ``ExecutorConductor``, which uses this
    module: it is named here by what it offers, so the two modules do not import each other)."""

    @property
    def statistics(self) -> dict[str, int]: ...
    @property
    def jobs_in_flight(self) -> int: ...

#: Job-duration buckets, seconds: from a trivial flow to a long one.
_JOB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 300.0, 1800.0, float("inf"))
#: Board-call buckets, seconds.
_CALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5, 5.0, float("inf"))

#: Counters read from ``ExecutorConductor.statistics``: name, help, statistics key.
_COUNTERS = (
    ("claims", "Jobs claimed and started.", "dispatched"),
    ("claims_lost", "Claims lost while their job ran (renewal refused or failed past the "
                    "lease).", "claims_lost"),
    ("board_errors", "Jobboard errors conductors logged and retried.", "board_errors"),
)
_OUTCOMES = ("consumed", "abandoned", "trashed")
#: Atom end states (``legato.states.AtomState`` values).
_ENDS = ("SUCCESS", "FAILURE", "REVERTED", "REVERT_FAILURE")


class ConductorMetrics:
    """Conductor metrics; share one object between the conductors of a process.

    Args:
        registry: where the metrics are registered (never the process-wide default unless
            you pass it): use one ``CollectorRegistry`` per set of conductors.
        prefix: metric name prefix.

    Metrics (``<prefix>`` is ``legato_conductor`` by default):

    * ``<prefix>_jobs_total{outcome="consumed|abandoned|trashed"}``: jobs finished.
    * ``<prefix>_job_duration_seconds``: claim to finish, per job (histogram).
    * ``<prefix>_atom_duration_seconds{state="SUCCESS|FAILURE|REVERTED|REVERT_FAILURE"}``:
      how long each task or retry call ran (histogram; the engine times the call).
    * ``<prefix>_claims_total``: jobs claimed and started.
    * ``<prefix>_claim_seconds``: how long ``claim_next`` calls that got a job took
      (histogram).
    * ``<prefix>_claims_lost_total``: claims whose renewal failed or that another owner held
      when the job finished.
    * ``<prefix>_board_errors_total``: jobboard errors logged and retried.
    * ``<prefix>_storage_errors_total``: jobs abandoned because persistence failed (or
      released because it is corrupted).
    * ``<prefix>_jobs_in_flight``: jobs running now (gauge).
    """

    def __init__(self, registry: CollectorRegistry, *, prefix: str = "legato_conductor") -> None:
        self.registry = registry
        self.prefix = prefix
        self._conductors = _Conductors(prefix)
        registry.register(self._conductors)
        self.duration = Histogram(f"{prefix}_job_duration_seconds",
                                  "Seconds from claiming a job to finishing it.",
                                  buckets=_JOB_BUCKETS, registry=registry)
        self.atom_duration = Histogram(f"{prefix}_atom_duration_seconds",
                                       "Seconds each task or retry ran, by its end state.",
                                       labelnames=("state",), buckets=_JOB_BUCKETS,
                                       registry=registry)
        self.claim_seconds = Histogram(f"{prefix}_claim_seconds",
                                       "Seconds a claim_next call that got a job took.",
                                       buckets=_CALL_BUCKETS, registry=registry)
        self.storage_errors = Counter(f"{prefix}_storage_errors",
                                      "Jobs handed back because persistence failed.",
                                      registry=registry)
        # One child per end state, made once: the hot path skips the label lookup.
        self._atom_ends = {state: self.atom_duration.labels(state=state) for state in _ENDS}

    def track(self, conductor: Tracked) -> None:
        """Export ``conductor``'s ``statistics`` and jobs in flight (conductors call this
        when given these metrics)."""
        self._conductors.add(conductor)

    def watch_board(self, board: JobBoard, *, refresh: float = 5.0) -> BoardGauges:
        """Also export ``board``'s job counts (see ``BoardGauges``); returns the collector."""
        gauges = BoardGauges(board, prefix=self.prefix, refresh=refresh)
        self.registry.register(gauges)
        return gauges

    def attach(self, event: str, details: dict[str, Any]) -> None:
        """Conductor ``running_start`` listener: time the engine's atoms (its ``atom_timer``:
        the engine measures each call, with no atom event built for it)."""
        engine = details.get("engine")
        if engine is not None:
            engine.atom_timer = self._time_atom

    def _time_atom(self, state: str, seconds: float) -> None:
        child = self._atom_ends.get(state)
        if child is not None:
            child.observe(seconds)


class _Conductors(Collector):
    """The counters and the in-flight gauge, summed over the tracked conductors' statistics
    when the registry is collected."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._conductors: list[Tracked] = []

    def add(self, conductor: Tracked) -> None:
        with self._lock:
            if conductor not in self._conductors:
                self._conductors.append(conductor)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with self._lock:
            conductors = list(self._conductors)
        totals: dict[str, int] = {}
        in_flight = 0
        for conductor in conductors:
            for key, value in conductor.statistics.items():
                totals[key] = totals.get(key, 0) + value
            in_flight += conductor.jobs_in_flight
        jobs = CounterMetricFamily(f"{self.prefix}_jobs",
                                   "Jobs finished by conductors, by outcome.",
                                   labels=("outcome",))
        for outcome in _OUTCOMES:
            jobs.add_metric((outcome,), totals.get(outcome, 0))
        yield jobs
        for name, text, key in _COUNTERS:
            yield CounterMetricFamily(f"{self.prefix}_{name}", text, value=totals.get(key, 0))
        yield GaugeMetricFamily(f"{self.prefix}_jobs_in_flight", "Jobs running now.",
                                value=in_flight)

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        return self.collect()


class BoardGauges(Collector):
    """A collector exporting ``<prefix>_board_jobs{state="waiting|delayed|claimed|trashed"}``
    from ``board.job_counts()``, read when the registry is collected and at most once every
    ``refresh`` seconds (scrapes in between get the last counts). A board that cannot answer
    keeps the last counts and sets ``<prefix>_board_up`` to 0."""

    def __init__(self, board: JobBoard, *, prefix: str = "legato_conductor",
                 refresh: float = 5.0) -> None:
        self.board = board
        self.prefix = prefix
        self.refresh = refresh
        self._lock = threading.Lock()
        self._counts: JobCounts | None = None
        self._up = 0
        self._read_at = float("-inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self.refresh:
                self._read_at = now
                try:
                    self._counts = self.board.job_counts()
                    self._up = 1
                except Exception:  # the scrape must answer; board_up says why it is stale
                    self._up = 0
            counts, up = self._counts, self._up
        jobs = GaugeMetricFamily(f"{self.prefix}_board_jobs",
                                 "Jobs on the board by state (refreshed every few seconds).",
                                 labels=("state",))
        if counts is not None:
            for state in ("waiting", "delayed", "claimed", "trashed"):
                jobs.add_metric((state,), getattr(counts, state))
        yield jobs
        yield GaugeMetricFamily(f"{self.prefix}_board_up",
                                "1 when the last reading of the board's counts succeeded.",
                                value=up)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering must not call the board: describe without collecting.
        return iter(())
