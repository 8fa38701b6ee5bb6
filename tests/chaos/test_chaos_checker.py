"""The chaos invariant checker on hand-made logs: it passes a clean run and the documented
at-least-once case, and catches each kind of violation."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato.testing.chaos import (
    CheckResult,
    ConductorEvent,
    JobReport,
    check,
    check_hostile,
    check_secret,
    read_events,
    read_step_runs,
)

A, B = 100, 200  # two conductor processes


def _logs(tmp_path: Path, side_effects: list[str], events: list[ConductorEvent],
          ) -> tuple[Path, Path]:
    runs = tmp_path / "side-effects.log"
    runs.write_text("".join(line + "\n" for line in side_effects))
    log = tmp_path / "events.log"
    log.write_text("".join(e.to_json() + "\n" for e in events))
    return runs, log


def _run(what: str, step: int, run: str, pid: int, at: float) -> str:
    return f"{what} j1 {step} {run} {pid} {at:.6f}"


def _check(tmp_path: Path, side_effects: list[str], events: list[ConductorEvent],
           report: JobReport | None = None) -> dict[str, int]:
    runs, log = _logs(tmp_path, side_effects, events)
    report = report or JobReport("j1", 2, "SUCCESS", {0: "r0", 1: "r1"})
    result = check([report], read_step_runs(runs), read_events(log))
    return {k: v for k, v in result.by_invariant().items() if v}


CLEAN = [_run("start", 0, "r0", A, 10), _run("end", 0, "r0", A, 11),
         _run("start", 1, "r1", A, 11.1), _run("end", 1, "r1", A, 12)]
CLAIM_A = ConductorEvent("running_start", "j1", A, 9.5, fence=1)
CONSUMED_A = ConductorEvent("job_consumed", "j1", A, 12.5, fence=1)


def test_a_clean_run_passes(tmp_path: Path) -> None:
    runs, log = _logs(tmp_path, CLEAN, [CLAIM_A, CONSUMED_A])
    result = check([JobReport("j1", 2, "SUCCESS", {0: "r0", 1: "r1"})], read_step_runs(runs),
                   read_events(log))
    assert result.ok, result.violations
    assert (result.jobs, result.steps_run, result.steps_rerun) == (1, 2, 0)
    assert result.checked["one_run_per_claim"] == 2


def test_a_rerun_after_a_lost_claim_is_the_documented_case(tmp_path: Path) -> None:
    side_effects = [_run("start", 0, "r0", A, 10), _run("end", 0, "r0", A, 11),
                    _run("start", 1, "rA", A, 11.1),  # A killed mid-step: no end line
                    _run("start", 1, "r1", B, 15), _run("end", 1, "r1", B, 16)]
    events = [CLAIM_A, ConductorEvent("running_start", "j1", B, 14.9, fence=2),
              ConductorEvent("job_consumed", "j1", B, 16.5, fence=2)]
    runs, log = _logs(tmp_path, side_effects, events)
    result = check([JobReport("j1", 2, "SUCCESS", {0: "r0", 1: "r1"})], read_step_runs(runs),
                   read_events(log))
    assert result.ok, result.violations
    assert result.steps_rerun == 1


def test_two_runs_under_one_claim_are_a_double_run(tmp_path: Path) -> None:
    side_effects = [*CLEAN, _run("start", 1, "r1b", A, 12.1), _run("end", 1, "r1b", A, 12.2)]
    found = _check(tmp_path, side_effects, [CLAIM_A, CONSUMED_A],
                   JobReport("j1", 2, "SUCCESS", {0: "r0", 1: "r1b"}))
    assert found == {"one_run_per_claim": 1}


def test_a_run_after_the_job_was_consumed_is_caught(tmp_path: Path) -> None:
    side_effects = [*CLEAN, _run("start", 1, "late", B, 20)]
    events = [CLAIM_A, CONSUMED_A, ConductorEvent("running_start", "j1", B, 8.0, fence=2)]
    found = _check(tmp_path, side_effects, events)
    assert found.get("no_run_after_consume") == 1
    assert found.get("no_rerun_after_success") == 1


def test_a_trashed_job_is_caught(tmp_path: Path) -> None:
    found = _check(tmp_path, CLEAN[:2], [CLAIM_A],
                   JobReport("j1", 2, "FAILURE", {0: "r0"}, trashed=True))
    assert found == {"not_trashed": 1, "completed_once": 1}


def _killed_three_times_then_trashed(abandoned_once: bool) -> list[ConductorEvent]:
    events = [ConductorEvent("running_start", "j1", pid, 10.0 * fence, fence=fence)
              for fence, pid in ((1, A), (2, B), (3, A + 1))]
    if abandoned_once:
        events.append(ConductorEvent("job_abandoned", "j1", B, 25.0, fence=2, reason="boom"))
    events.append(ConductorEvent("job_trashed", "j1", B + 1, 40.0, fence=4,
                                 reason="too many attempts"))
    return events


@pytest.mark.parametrize(("max_attempts", "abandoned_once", "allowed"), [
    (3, False, True),     # three conductor deaths in a row: the poison-job rule, by design
    (None, False, False),  # a run without a small max_attempts never trashes
    (4, False, False),    # fewer deaths than the limit: trashed too early
    (3, True, False),     # one claim ended normally: not three deaths
])
def test_a_job_trashed_by_the_poison_rule_after_conductor_deaths_is_allowed(
        tmp_path: Path, max_attempts: int | None, abandoned_once: bool, allowed: bool) -> None:
    runs, log = _logs(tmp_path, CLEAN[:1], _killed_three_times_then_trashed(abandoned_once))
    report = JobReport("j1", 2, "RUNNING", {}, trashed=True)
    result = check([report], read_step_runs(runs), read_events(log), max_attempts=max_attempts)
    found = {k: v for k, v in result.by_invariant().items() if v}
    if allowed:
        assert found == {}
        assert result.checked["poison_trashed"] == 1
    else:
        assert found == {"not_trashed": 1, "completed_once": 1}


def test_a_job_consumed_twice_or_left_on_the_board_is_caught(tmp_path: Path) -> None:
    twice = [CLAIM_A, CONSUMED_A, ConductorEvent("job_consumed", "j1", B, 13.0, fence=1)]
    assert _check(tmp_path, CLEAN, twice) == {"completed_once": 1}
    left = JobReport("j1", 2, "SUSPENDED", {0: "r0", 1: "r1"}, on_board=True)
    assert _check(tmp_path, CLEAN, [CLAIM_A], left) == {"completed_once": 1}


def test_a_stale_step_write_and_a_stale_consume_are_caught(tmp_path: Path) -> None:
    # A (fence 1) paused in step 1; B (fence 2) re-ran it and finished; A's result landed last
    # and A's consume with fence 1 was accepted.
    side_effects = [_run("start", 0, "r0", A, 10), _run("end", 0, "r0", A, 11),
                    _run("start", 1, "old", A, 11.1),
                    _run("start", 1, "new", B, 15), _run("end", 1, "new", B, 16),
                    _run("end", 1, "old", A, 21)]
    events = [CLAIM_A, ConductorEvent("running_start", "j1", B, 14.9, fence=2),
              ConductorEvent("job_consumed", "j1", A, 21.5, fence=1)]
    found = _check(tmp_path, side_effects, events,
                   JobReport("j1", 2, "SUCCESS", {0: "r0", 1: "old"}))
    assert found == {"no_stale_write": 2}


def test_a_step_started_under_a_superseded_claim_is_noticed(tmp_path: Path) -> None:
    # B took the job over (fence 2) and started step 1; A then started step 1 under fence 1 (its
    # result, written before B's, was not recorded): one more run for the lost claim, allowed,
    # but reported.
    side_effects = [_run("start", 0, "r0", A, 10), _run("end", 0, "r0", A, 11),
                    _run("start", 1, "stale", A, 15.5), _run("end", 1, "stale", A, 15.6),
                    _run("start", 1, "r1", B, 15), _run("end", 1, "r1", B, 16)]
    events = [CLAIM_A, ConductorEvent("running_start", "j1", B, 14.9, fence=2),
              ConductorEvent("job_consumed", "j1", B, 16.5, fence=2)]
    runs, log = _logs(tmp_path, side_effects, events)
    result = check([JobReport("j1", 2, "SUCCESS", {0: "r0", 1: "r1"})], read_step_runs(runs),
                   read_events(log))
    assert result.ok, result.violations
    assert [n.invariant for n in result.notices] == ["late_start"]
    assert "under fence 1, after fence 2" in result.notices[0].evidence


@pytest.mark.parametrize("line", ["start j1 0", "garbage", "end j1 0 x 1 notatime"])
def test_torn_lines_are_skipped(tmp_path: Path, line: str) -> None:
    runs, _ = _logs(tmp_path, [*CLEAN, line], [])
    assert len(read_step_runs(runs)) == 2


# -- a wiped board (redis_wipe) -----------------------------------------------------------------


def test_a_job_lost_with_the_board_and_reported_lost_is_correct(tmp_path: Path) -> None:
    # Step 0 ran, then the board's data went: the flow never finished, the job is gone from the
    # board, and the producer's Job.state raised BoardDataLost.
    report = JobReport("j1", 2, "RUNNING", {0: "r0"}, producer="lost")
    runs, log = _logs(tmp_path, CLEAN[:2], [CLAIM_A])
    result = check([report], read_step_runs(runs), read_events(log))
    assert result.ok, result.violations
    assert result.checked["loss_reported"] == 1


def test_a_lost_job_reported_complete_is_caught(tmp_path: Path) -> None:
    report = JobReport("j1", 2, "RUNNING", {0: "r0"}, producer="COMPLETE")
    found = _check(tmp_path, CLEAN[:2], [CLAIM_A], report)
    assert found == {"loss_reported": 1, "completed_once": 1}
    never_ran = JobReport("j1", 2, None, {}, producer="COMPLETE")
    assert _check(tmp_path, [], [], never_ran) == {"loss_reported": 1, "completed_once": 1}


def test_a_completed_job_reported_complete_passes(tmp_path: Path) -> None:
    report = JobReport("j1", 2, "SUCCESS", {0: "r0", 1: "r1"}, producer="COMPLETE")
    assert _check(tmp_path, CLEAN, [CLAIM_A, CONSUMED_A], report) == {}


def test_a_job_not_reported_lost_must_still_complete(tmp_path: Path) -> None:
    # Neither lost nor complete (still waiting): the usual invariant holds.
    report = JobReport("j1", 2, None, {}, on_board=True, producer="UNCLAIMED")
    assert _check(tmp_path, [], [], report) == {"completed_once": 1}


# -- hostile factories and secrets --------------------------------------------------------------


def _trashed(job: str, reason: str) -> ConductorEvent:
    return ConductorEvent("job_trashed", job, A, 1.0, fence=1, reason=reason)


def test_hostile_jobs_trashed_with_a_refusal_or_refused_at_post_pass() -> None:
    result = CheckResult()
    events = [_trashed("h0", "factory refused: not a factory name of the form "
                             "'module:function' (one identifier after the colon): 'm:os.system'"),
              _trashed("h1", "factory refused: flow factory 'm:f' is not registered")]
    check_hostile(result, ["h0", "h1", "h2"], events, ["h2"], [])
    assert result.ok, result.violations
    assert result.checked["factory_refused"] == 3


def test_a_hostile_job_never_trashed_or_trashed_for_another_reason_is_caught() -> None:
    result = CheckResult()
    events = [_trashed("h1", "too many attempts"), _trashed("h2", "flow REVERTED")]
    check_hostile(result, ["h0", "h1", "h2"], events, [], [])
    assert [v.job for v in result.violations] == ["h0", "h1", "h2"]
    assert "never trashed" in result.violations[0].evidence
    assert "too many attempts" in result.violations[1].evidence


def test_a_called_hostile_factory_is_caught_even_if_the_job_was_trashed() -> None:
    result = CheckResult()
    events = [_trashed("h0", "factory refused: flow factory 'm:f' is not registered")]
    check_hostile(result, ["h0"], events, [], ["/tmp/x/hostile-0.marker exists"])
    assert [v.invariant for v in result.violations] == ["factory_refused"]
    assert "hostile-0.marker" in result.violations[0].evidence


def test_a_password_in_a_log_or_command_line_is_caught_and_not_repeated() -> None:
    result = CheckResult()
    check_secret(result, "S3cretPW", {
        "conductor-0.log": "ready c0\nstarted on redis://:***@127.0.0.1:1/0\n",
        "the command line of conductor pid 7": "python -m legato.testing.chaos worker "
                                                "redis://:S3cretPW@127.0.0.1:1/0 sqlite:///f"})
    assert [v.invariant for v in result.violations] == ["secret_hidden"]
    assert "pid 7" in result.violations[0].evidence
    assert "S3cretPW" not in str(result.violations[0])
    assert result.checked["secret_hidden"] == 2
