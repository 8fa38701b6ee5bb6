"""The chaos suite: conductor processes under faults, and the invariants they must keep.

``run_scenario(name, board, seed=…)`` runs one named scenario (``SCENARIOS``) on one board
(``sqlite``, ``postgres``, ``redis``, ``zookeeper``) and returns a ``RunResult`` whose ``check``
holds counts per invariant and every violation with its evidence. ``Harness`` and
``ChaosConfig`` run any board URL and persistence URL with any mix of faults; ``check`` is the
invariant checker on its own. ``python -m legato.testing.chaos run --minutes N --seed S`` (what
``scripts/chaos`` runs) cycles through every scenario and board and prints a table.
See docs/reliability.md.
"""

from __future__ import annotations

from legato.testing.chaos._check import (
    INVARIANTS,
    CheckResult,
    ConductorEvent,
    JobReport,
    StepRun,
    Violation,
    check,
    check_hostile,
    check_secret,
    read_events,
    read_step_runs,
)
from legato.testing.chaos._harness import FAULTS, ChaosConfig, Harness, PrivateRedis, RunResult
from legato.testing.chaos._scenarios import BOARDS, SCENARIOS, Scenario, applicable, run_scenario
from legato.testing.chaos._workload import PostedJob, chaos_flow, post_workload

__all__ = [
    "BOARDS",
    "FAULTS",
    "INVARIANTS",
    "SCENARIOS",
    "ChaosConfig",
    "CheckResult",
    "ConductorEvent",
    "Harness",
    "JobReport",
    "PostedJob",
    "PrivateRedis",
    "RunResult",
    "Scenario",
    "StepRun",
    "Violation",
    "applicable",
    "chaos_flow",
    "check",
    "check_hostile",
    "check_secret",
    "post_workload",
    "read_events",
    "read_step_runs",
    "run_scenario",
]
