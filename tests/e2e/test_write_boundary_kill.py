"""Coalesced writes keep the guarantees: a conductor SIGKILLed at each write boundary of a
3-step flow (PostgreSQL board and persistence, one run per boundary), then a survivor takes the
jobs over. No step whose success was recorded runs again; the step in flight runs again at most
once; each job ends consumed once, and its history says the killed claim was lost.

A 3-step job makes four write transactions: (1) the take, the claim's start, the new atoms, the
flow's RUNNING and step 1's RUNNING; (2) step 1's result and step 2's RUNNING; (3) step 2's
result and step 3's RUNNING; (4) step 3's result, the flow's SUCCESS and the claim's end. On
PostgreSQL each is one statement of data-modifying CTEs (write 1 autocommitted, its writes
gated on the take; writes 2-4 in a transaction): the boundaries are the same.

Both layouts run: board and persistence in one database (the same URL: write 4 also consumes
the job on the board and claims the next one) and in two (another schema: the consume, and the
next claim, are board calls after write 4). A second, one-step job is posted behind the first,
so the claim that rides in write 4 is killed too and must lapse for the survivor to run it.

A non-blocking conductor running three 3-step jobs at once is killed the same way, its writes
counted across the three (they are serialised, so the N-th write is a cut through every job in
flight): whatever each job had recorded at the cut, no recorded step runs again, a step in
flight runs again at most once, and every job ends consumed exactly once.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.states import AtomState, FlowState
from legato.testing import conductor as tc
from legato.testing import services

CHILD = Path(__file__).with_name("write_boundary_child.py")
STEPS = 3
WRITES = 4
TTL = 2.0


def _run_child_until_stopped(board_url: str, persistence_url: str, boundary: int,
                             at_once: int | None = None) -> list[str]:
    """Start the child conductor (non-blocking with ``at_once`` jobs at once), wait until it
    stops at ``boundary``, SIGKILL it; its lines."""
    lines: list[str] = []

    def stopped(line: str) -> bool:
        lines.append(line.strip())
        return line.strip() == "stopped"

    extra = [] if at_once is None else [str(at_once)]
    with subprocess.Popen([sys.executable, str(CHILD), board_url, persistence_url,
                           str(boundary), *extra], stdout=subprocess.PIPE, text=True) as proc:
        try:
            tc.next_line(proc.stdout, stopped, timeout=60.0,
                         failure=f"the child never stopped at write {boundary}")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return lines


@contextlib.contextmanager
def _persistence_url(layout: str, board_url: str) -> Iterator[str]:
    """The board's URL (one database) or another schema's (two)."""
    if layout == "shared":
        yield board_url
        return
    with services.postgres_url() as other:
        yield other


@pytest.mark.parametrize("layout", ["shared", "separate"])
@pytest.mark.parametrize("boundary", range(WRITES + 1))
def test_sigkill_at_every_write_boundary(boundary: int, layout: str, postgres_url: str,
                                         tmp_path: Path) -> None:
    with _persistence_url(layout, postgres_url) as persistence_url:
        _kill_and_take_over(boundary, layout, postgres_url, persistence_url, tmp_path)


def _kill_and_take_over(boundary: int, layout: str, board_url: str, persistence_url: str,
                        tmp_path: Path) -> None:
    log = tmp_path / "side-effects.log"
    label = f"b{boundary}-{uuid.uuid4().hex[:8]}"
    persistence = lp.connect(persistence_url)
    persistence.upgrade()
    shared = persistence.database is not None and layout == "shared"
    with jb.connect(board_url, persistence=persistence) as board:
        assert (board.database == persistence.database) is shared
        job = tc.post_job(board, persistence, tc.side_effect_flow, name="boundary",
                          kwargs={"steps": STEPS, "label": label, "log_path": str(log)})
        behind = tc.post_job(board, persistence, tc.side_effect_flow, name="behind",
                             kwargs={"steps": 1, "label": f"{label}-behind",
                                     "log_path": str(log)})
        lines = _run_child_until_stopped(board_url, persistence_url, boundary)
        assert [line for line in lines if line.startswith("write ")] == [
            f"write {n} _update_many" for n in range(1, boundary + 1)]
        assert job.book_uuid is not None
        (flow,) = persistence.get_logbook(job.book_uuid).flows.values()
        recorded = {ad.name for ad in flow if ad.state == AtomState.SUCCESS}
        running = {ad.name for ad in flow if ad.state == AtomState.RUNNING}
        # What each boundary has recorded: every success before it, the next step running.
        assert len(recorded) == max(0, boundary - 1)
        assert len(running) == (1 if 1 <= boundary <= STEPS else 0)
        assert flow.state == {0: None, WRITES: FlowState.SUCCESS}.get(boundary,
                                                                          FlowState.RUNNING)
        consumed_by_the_dead = shared and boundary == WRITES
        if consumed_by_the_dead:  # consumed with its flow's SUCCESS; the next job claimed
            assert board.job_count == 1
            assert (board.find_owner(behind) or "").startswith("doomed@")
        else:
            assert board.job_count == 2
        ran_before = _starts(log)
        _survivor_drains(board, persistence)
    starts = _starts(log)
    names = [f"step-{i}" for i in range(STEPS)]
    for name in names:
        if name in recorded:  # recorded: never runs again
            assert starts[name] == ran_before[name] == 1, (name, starts)
        else:  # in flight (ran, result not recorded) runs again once; the rest run once
            assert starts[name] == ran_before[name] + 1, (name, starts)
            assert ran_before[name] <= 1
    assert starts["behind-0"] == 1 and ran_before["behind-0"] == 0
    done = persistence.get_flow_details(flow.uuid)
    assert done.state == FlowState.SUCCESS
    assert [ad.state for ad in done] == [AtomState.SUCCESS] * STEPS
    history = persistence.job_history(job.uuid)
    if consumed_by_the_dead:
        expected = [("doomed", "consumed")]
    else:
        expected = [("survivor", "consumed")]
        if boundary:  # the killed claim took the flow (its first write): its start is recorded
            expected.insert(0, ("doomed", "lost claim"))
    assert [(c.owner.split("@")[0], c.outcome) for c in history] == expected
    # The job behind was claimed by the dead conductor only where its claim rode in write 4;
    # that claim never took the flow, so only the survivor's claim is in the history.
    assert [(c.owner.split("@")[0], c.outcome)
            for c in persistence.job_history(behind.uuid)] == [("survivor", "consumed")]
    persistence.close()


def _survivor_drains(board: jb.JobBoard, persistence: lp.Persistence) -> None:
    """A conductor claims every job left on the board as the dead claims lapse, and runs it."""
    survivor = BlockingConductor("survivor", board, persistence, wait_timeout=0.1,
                                 claim_ttl=TTL, allowed_factories=["legato.testing"])
    survivor.run(max_dispatches=board.job_count)
    assert board.job_count == 0


def _starts(log: Path) -> collections.Counter[str]:
    """How many times each step of the job (``step-N``) and of the job behind it
    (``behind-N``) started, from the side-effect log."""
    counts: collections.Counter[str] = collections.Counter()
    for (label, index), started in _starts_by_job(log).items():
        counts[f"{'behind' if label.endswith('-behind') else 'step'}-{index}"] += started
    return counts


JOBS_AT_ONCE = 3


@pytest.mark.parametrize("boundary", [0, 2, 5, 8])
def test_sigkill_at_write_boundaries_with_several_jobs_at_once(boundary: int, postgres_url: str,
                                                               tmp_path: Path) -> None:
    log = tmp_path / "side-effects.log"
    persistence = lp.connect(postgres_url)
    persistence.upgrade()
    with jb.connect(postgres_url, persistence=persistence) as board:
        jobs = {f"j{i}-{uuid.uuid4().hex[:8]}": None for i in range(JOBS_AT_ONCE)}
        posted = {label: tc.post_job(board, persistence, tc.side_effect_flow, name=label,
                                     kwargs={"steps": STEPS, "label": label,
                                             "log_path": str(log)})
                  for label in jobs}
        lines = _run_child_until_stopped(postgres_url, postgres_url, boundary, JOBS_AT_ONCE)
        assert len([line for line in lines if line.startswith("write ")]) == boundary
        recorded = {}
        for label, job in posted.items():
            assert job.book_uuid is not None
            (flow,) = persistence.get_logbook(job.book_uuid).flows.values()
            recorded[label] = {ad.name for ad in flow if ad.state == AtomState.SUCCESS}
        ran_before = _starts_by_job(log)
        _survivor_drains(board, persistence)
    starts = _starts_by_job(log)
    assert boundary == 0 or sum(ran_before.values()) > 0  # the cut came with steps run
    for label, job in posted.items():
        for index in range(STEPS):
            name, key = f"step-{index}", (label, index)
            if name in recorded[label]:  # recorded: never runs again
                assert starts[key] == ran_before[key] == 1, (key, starts)
            else:  # in flight runs again once; the rest run once
                assert starts[key] == ran_before[key] + 1, (key, starts)
                assert ran_before[key] <= 1
        assert job.book_uuid is not None
        (flow,) = persistence.get_logbook(job.book_uuid).flows.values()
        assert flow.state == FlowState.SUCCESS
        assert [ad.state for ad in flow] == [AtomState.SUCCESS] * STEPS
        outcomes = [(c.owner.split("@")[0], c.outcome) for c in persistence.job_history(job.uuid)]
        assert [o for o in outcomes if o[1] == "consumed"] == outcomes[-1:], outcomes
        assert all(o == ("doomed", "lost claim") for o in outcomes[:-1]), outcomes
    persistence.close()


def _starts_by_job(log: Path) -> collections.Counter[tuple[str, int]]:
    """How many times each (job label, step index) started, from the side-effect log."""
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            what, label, index, *_ = line.split()
            if what == "start":
                counts[(label, int(index))] += 1
    return counts
