"""The conductor's own histograms export exactly what prometheus-client's ``Histogram`` does."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from legato.conductor import ConductorMetrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(registry: CollectorRegistry, name: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() if family.name == name
            for s in family.samples if not s.name.endswith("_created")}


@pytest.mark.parametrize("amounts", [[], [0.0003], [0.001, 0.0011, 2.0, 7000.0], [0.05] * 3])
def test_job_duration_matches_the_client_histogram(amounts: list[float]) -> None:
    ours = CollectorRegistry()
    metrics = ConductorMetrics(registry=ours)
    theirs = CollectorRegistry()
    reference = Histogram("legato_conductor_job_duration_seconds", "x",
                          buckets=metrics.duration._bounds, registry=theirs)
    for amount in amounts:
        metrics.duration.observe(amount)
        reference.observe(amount)
    name = "legato_conductor_job_duration_seconds"
    assert _samples(ours, name) == _samples(theirs, name)
    created = [s for f in ours.collect() for s in f.samples if s.name == f"{name}_created"]
    assert len(created) == 1


def test_atom_duration_by_state_matches_the_client_histogram() -> None:
    ours = CollectorRegistry()
    metrics = ConductorMetrics(registry=ours)
    theirs = CollectorRegistry()
    reference = Histogram("legato_conductor_atom_duration_seconds", "x", labelnames=("state",),
                          buckets=metrics.atom_duration._bounds, registry=theirs)
    for state in ("SUCCESS", "FAILURE", "REVERTED", "REVERT_FAILURE"):
        reference.labels(state=state)
    for state, amount in [("SUCCESS", 0.002), ("SUCCESS", 0.3), ("FAILURE", 12.0),
                          ("PENDING", 1.0)]:  # not an end state: not observed
        metrics._time_atom(state, amount)
        if state != "PENDING":
            reference.labels(state=state).observe(amount)
    name = "legato_conductor_atom_duration_seconds"
    assert _samples(ours, name) == _samples(theirs, name)
    created = {s.labels["state"] for f in ours.collect() for s in f.samples
               if s.name == f"{name}_created"}
    assert created == {"SUCCESS", "FAILURE", "REVERTED", "REVERT_FAILURE"}
