"""The invariants a chaos run must keep, checked from what the run left behind.

Inputs are plain records, so the checker can be tested on hand-made logs:

* ``StepRun``: one run of one step, from the side-effect log (start and end lines);
* ``ConductorEvent``: what conductor processes reported (``running_start`` with the claim's
  fence, ``job_consumed``, ``job_abandoned``, ``job_trashed``), from the event log;
* ``JobReport``: per job, what persistence recorded (flow state, each step's result, which is
  the token of the run that wrote it) and whether the board still lists or trashed it.

Invariants (the names used in counts and violations):

``completed_once``
    the flow is SUCCESS, the job left the board, and at most one consume was reported.
``not_trashed``
    no job was trashed (an outage must never trash work). The one exception is the documented
    poison-job rule, checked when the run's conductors had a small ``max_attempts``: a job
    trashed for too many attempts after at least that many claims that each ended with their
    conductor killed mid-run (no outcome reported for the claim) is counted as ``poison_trashed``,
    not as a violation — a job that takes its conductor down every time is trashed, by design.
``no_rerun_after_success``
    no run of a step started after the run whose result is recorded had ended.
``one_run_per_claim``
    a step runs at most once per claim: two runs of a step never belong to one claim (fence),
    so re-runs are bounded by the claims lost.
``no_run_after_consume``
    no step of a job started after the job was consumed.
``no_stale_write``
    the recorded result of each step comes from a run under the newest claim that ran the step,
    and the consume came from the job's newest claim: nothing written by a stale owner landed.

``garbage_set_aside`` (checked by the harness, in the ``garbage_record`` scenario)
    a job nested hundreds deep is refused by ``post`` with a clear one-line error, or, if
    stored, set aside (trashed, or left alone) rather than abandoned and re-claimed again and
    again; so is a record planted around the API (a bad fence); the other jobs all complete.
``loss_reported`` (``redis_wipe``)
    a job the producer sees as COMPLETE (``Job.state``) has its flow SUCCESS in persistence; a
    job lost with the board's data is reported lost (``BoardDataLost``), which is correct, and
    is exempt from ``completed_once``; conductors survive the loss and log it.
``factory_refused`` (``hostile_factory``, ``check_hostile``)
    a job naming a factory that is not a registered function of its module is trashed (or
    refused at post) with a reason naming the refusal, and nothing it names was ever called.
``secret_hidden`` (``secret_url``, ``check_secret``)
    the board's password appears in no conductor output and no process command line.

Besides violations the checker reports ``late_start`` notices: a step started under a claim after
a newer claim (higher fence) on the job had started running it. The at-least-once contract allows
it (the run is one more run for a lost claim, and its writes must be refused), but it shows a
conductor working past the end of its claim.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "INVARIANTS",
    "CheckResult",
    "ConductorEvent",
    "JobReport",
    "StepRun",
    "Violation",
    "check",
    "check_hostile",
    "check_secret",
    "read_events",
    "read_step_runs",
]

INVARIANTS = ("completed_once", "not_trashed", "no_rerun_after_success", "one_run_per_claim",
              "no_run_after_consume", "no_stale_write", "garbage_set_aside", "loss_reported",
              "factory_refused", "secret_hidden")

#: Conductor events that end a claim.
_OUTCOMES = ("job_consumed", "job_abandoned", "job_trashed")
#: The reason a conductor trashes a job with when its claims ran out (``legato.conductor``).
TOO_MANY_ATTEMPTS = "too many attempts"

#: ``JobReport.producer`` for a job whose ``Job.state`` raised ``BoardDataLost``.
LOST = "lost"


@dataclasses.dataclass
class StepRun:
    """One run of a step: ``end`` is None when it never ended (its process was killed)."""

    job: str
    step: int
    run: str
    pid: int
    start: float
    end: float | None = None


@dataclasses.dataclass(frozen=True)
class ConductorEvent:
    """One conductor event: ``job`` is the job's name, ``fence`` the claim's fencing number."""

    event: str
    job: str
    pid: int
    time: float
    fence: int | None = None
    reason: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclasses.dataclass
class JobReport:
    """What persistence and the board say about one job after the run."""

    name: str
    steps: int
    flow_state: str | None
    recorded: dict[int, Any]
    on_board: bool = False
    trashed: bool = False
    #: What the producer's ``Job.state`` said after the run (a state name, or ``LOST`` when it
    #: raised ``BoardDataLost``); None when not asked.
    producer: str | None = None


@dataclasses.dataclass(frozen=True)
class Violation:
    invariant: str
    job: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.job}: {self.evidence}"


@dataclasses.dataclass
class CheckResult:
    """Counts per invariant (``checked``: how many times each was checked), the steps run and
    re-run, every violation with its evidence, and ``late_start`` notices (not violations)."""

    jobs: int = 0
    steps_run: int = 0
    steps_rerun: int = 0
    checked: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    violations: list[Violation] = dataclasses.field(default_factory=list)
    notices: list[Violation] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_invariant(self) -> dict[str, int]:
        counts = dict.fromkeys(INVARIANTS, 0)
        for violation in self.violations:
            counts[violation.invariant] = counts.get(violation.invariant, 0) + 1
        return counts

    def add(self, invariant: str, job: str, evidence: str) -> None:
        self.violations.append(Violation(invariant, job, evidence))


def read_step_runs(path: Path) -> list[StepRun]:
    """Every step run of a side-effect log (a torn or foreign line is skipped)."""
    runs: dict[str, StepRun] = {}
    if not path.exists():
        return []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 6 or parts[0] not in ("start", "end"):
            continue
        what, job, step, run, pid, at = parts
        with contextlib.suppress(ValueError):
            if what == "start":
                runs[run] = StepRun(job, int(step), run, int(pid), float(at))
            elif run in runs:
                runs[run].end = float(at)
    return list(runs.values())


def read_events(path: Path) -> list[ConductorEvent]:
    """Every event of an event log (one JSON object a line; a torn line is skipped)."""
    events = []
    if not path.exists():
        return []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, TypeError):
            events.append(ConductorEvent(**json.loads(line)))
    return events


def _t(value: float) -> str:
    return f"{value:.3f}"


class _Job:
    """One job's runs and events, with the claim each run belongs to."""

    def __init__(self, report: JobReport, runs: list[StepRun],
                 events: list[ConductorEvent]) -> None:
        self.report = report
        self.runs = sorted(runs, key=lambda r: r.start)
        self.claims = sorted((e for e in events if e.event == "running_start"),
                             key=lambda e: e.time)
        self.consumes = [e for e in events if e.event == "job_consumed"]
        self.outcomes = [e for e in events if e.event in _OUTCOMES]

    def died_claims(self) -> int:
        """Claims that started running and reported no outcome: their conductor died."""
        ended = {e.fence for e in self.outcomes}
        return sum(1 for claim in self.claims if claim.fence not in ended)

    def poison_trashed(self, max_attempts: int | None) -> bool:
        """Trashed by the poison-job rule: too many attempts, every one a conductor death."""
        if max_attempts is None or not self.report.trashed:
            return False
        trashes = [e for e in self.outcomes if e.event == "job_trashed"]
        return (len(trashes) == 1 and (trashes[0].reason or "").startswith(TOO_MANY_ATTEMPTS)
                and len(self.outcomes) == 1 and self.died_claims() >= max_attempts)

    def claim_of(self, run: StepRun) -> ConductorEvent | None:
        """The newest claim this run's process started running before the run started."""
        found = None
        for claim in self.claims:
            if claim.pid == run.pid and claim.time <= run.start:
                found = claim
        return found


def check(reports: Iterable[JobReport], runs: Iterable[StepRun],
          events: Iterable[ConductorEvent], *, max_attempts: int | None = None) -> CheckResult:
    """Check every invariant over one run's jobs; ``max_attempts``: the conductors' limit,
    when the run set one small enough for the poison-job rule to trash a job (``not_trashed``).
    """
    runs_by_job: dict[str, list[StepRun]] = collections.defaultdict(list)
    for run in runs:
        runs_by_job[run.job].append(run)
    events_by_job: dict[str, list[ConductorEvent]] = collections.defaultdict(list)
    for event in events:
        events_by_job[event.job].append(event)
    result = CheckResult()
    for report in reports:
        job = _Job(report, runs_by_job.get(report.name, []), events_by_job.get(report.name, []))
        result.jobs += 1
        result.steps_run += len(job.runs)
        per_step = collections.Counter(r.step for r in job.runs)
        result.steps_rerun += sum(n - 1 for n in per_step.values() if n > 1)
        _check_outcome(job, result, max_attempts)
        for step in range(report.steps):
            step_runs = [r for r in job.runs if r.step == step]
            _check_step(job, step, step_runs, result)
        _check_consume(job, result)
    return result


def _check_outcome(job: _Job, result: CheckResult, max_attempts: int | None) -> None:
    report = job.report
    result.checked["not_trashed"] += 1
    if job.poison_trashed(max_attempts):
        result.checked["poison_trashed"] += 1
        return
    result.checked["completed_once"] += 1
    if report.trashed:
        result.add("not_trashed", report.name, "the job is in the board's trash")
    if report.producer is not None:
        result.checked["loss_reported"] += 1
        if report.producer == "COMPLETE" and report.flow_state != "SUCCESS":
            result.add("loss_reported", report.name, f"the producer's Job.state says COMPLETE "
                       f"but the flow state is {report.flow_state}: success reported for a job "
                       "that never finished")
    lost = report.producer == LOST
    problems = []
    if report.flow_state != "SUCCESS" and not lost:
        problems.append(f"flow state {report.flow_state}")
    if report.on_board and not lost:
        problems.append("still on the board")
    if len(job.consumes) > 1:
        problems.append("consumed {} times (pids {})".format(
            len(job.consumes), ", ".join(str(e.pid) for e in job.consumes)))
    if problems:
        result.add("completed_once", report.name, "; ".join(problems))


def _check_step(job: _Job, step: int, runs: list[StepRun], result: CheckResult) -> None:
    name = job.report.name
    recorded = job.report.recorded.get(step)
    by_token = {r.run: r for r in runs}
    result.checked["no_rerun_after_success"] += 1
    winner = by_token.get(recorded) if isinstance(recorded, str) else None
    if winner is not None and winner.end is not None:
        for later in runs:
            if later.start > winner.end:
                result.add("no_rerun_after_success", name,
                           f"step {step}: run {later.run} (pid {later.pid}) started at "
                           f"{_t(later.start)}, after run {winner.run} whose result is "
                           f"recorded ended at {_t(winner.end)}")
    result.checked["no_stale_write"] += 1
    if winner is not None:
        newer = _newer_runs(job, winner, runs)
        if newer:
            result.add("no_stale_write", name,
                       f"step {step}: recorded result {recorded!r} (pid {winner.pid}, fence "
                       f"{_fence(job, winner)}) although run {newer[0].run} (pid "
                       f"{newer[0].pid}, fence {_fence(job, newer[0])}) ran it under a newer "
                       f"claim")
    elif runs and recorded is not None:
        result.add("no_stale_write", name,
                   f"step {step}: recorded result {recorded!r} is from no run in the log")
    seen: dict[tuple[int, int | None], StepRun] = {}
    for run in runs:
        claim = job.claim_of(run)
        key = (run.pid, claim.fence if claim is not None else None)
        result.checked["one_run_per_claim"] += 1
        if key in seen:
            result.add("one_run_per_claim", name,
                       f"step {step}: runs {seen[key].run} and {run.run} both under pid "
                       f"{run.pid} fence {key[1]}")
        seen[key] = run
        superseding = [c for c in job.claims if claim is not None and c.fence is not None
                       and claim.fence is not None and c.fence > claim.fence
                       and c.time < run.start]
        if claim is not None and superseding:
            first = superseding[0]
            result.notices.append(Violation(
                "late_start", name,
                f"step {step}: run {run.run} started at {_t(run.start)} by pid {run.pid} under "
                f"fence {claim.fence}, after fence {first.fence} (pid {first.pid}) started "
                f"running at {_t(first.time)}"))


def _fence(job: _Job, run: StepRun) -> int | None:
    claim = job.claim_of(run)
    return None if claim is None else claim.fence


def _newer_runs(job: _Job, winner: StepRun, runs: list[StepRun]) -> list[StepRun]:
    """Runs of the step under a newer claim than the recorded run's (by fence; by start time
    when a fence is unknown)."""
    mine = _fence(job, winner)
    newer = []
    for run in runs:
        if run is winner or (run.pid == winner.pid and _fence(job, run) == mine):
            continue
        theirs = _fence(job, run)
        if (theirs > mine) if (theirs is not None and mine is not None) else (
                run.start > winner.start):
            newer.append(run)
    return newer


def _check_consume(job: _Job, result: CheckResult) -> None:
    name = job.report.name
    if not job.consumes:
        return
    consumed = min(e.time for e in job.consumes)
    for run in job.runs:
        result.checked["no_run_after_consume"] += 1
        if run.start > consumed:
            result.add("no_run_after_consume", name,
                       f"step {run.step}: run {run.run} (pid {run.pid}) started at "
                       f"{_t(run.start)}, {run.start - consumed:.3f}s after the job was "
                       f"consumed at {_t(consumed)}")
    newest = max((c.fence for c in job.claims if c.fence is not None), default=None)
    for consume in job.consumes:
        result.checked["no_stale_write"] += 1
        if newest is not None and consume.fence is not None and consume.fence < newest:
            result.add("no_stale_write", name,
                       f"consumed by pid {consume.pid} with fence {consume.fence} although "
                       f"fence {newest} had claimed the job")


def check_hostile(result: CheckResult, jobs: Iterable[str], events: Iterable[ConductorEvent],
                  refused_at_post: Iterable[str], called: Iterable[str]) -> None:
    """``factory_refused`` for the ``jobs`` (names) whose factory must never be called: each is
    refused at post (``refused_at_post``) or trashed with a reason naming the factory refusal
    (``DisallowedFactory``, "not allowed", "not registered", ...); ``called`` lists evidence
    that something they name ran (marker files): any is a violation."""
    trashed = {e.job: e for e in events if e.event == "job_trashed"}
    refused = set(refused_at_post)
    for name in jobs:
        result.checked["factory_refused"] += 1
        if name in refused:
            continue
        event = trashed.get(name)
        if event is None:
            result.add("factory_refused", name, "the job with a hostile factory was never "
                       "trashed")
        elif not _names_refusal(event.reason or ""):
            result.add("factory_refused", name, f"trashed by pid {event.pid} with a reason "
                       f"that names no factory refusal: {event.reason!r}")
    for evidence in called:
        result.checked["factory_refused"] += 1
        result.add("factory_refused", "-", f"a hostile factory was called: {evidence}")


def _names_refusal(reason: str) -> bool:
    reason = reason.lower()
    return "factory" in reason and any(word in reason for word in (
        "not allowed", "disallowed", "refused", "not registered", "not under an allowed",
        "not a function", "module:function", "has no"))


def check_secret(result: CheckResult, secret: str, texts: dict[str, str]) -> None:
    """``secret_hidden``: ``secret`` appears in none of ``texts`` (what each names: a log
    file, a process's command line)."""
    for where, text in texts.items():
        result.checked["secret_hidden"] += 1
        if secret in text:
            line = next(line for line in text.splitlines() if secret in line)
            result.add("secret_hidden", "-", f"the password is shown in {where}: "
                       f"{line.replace(secret, '<PASSWORD>')[:200]!r}")
