"""Acceptance helpers for jobboards: real processes, real clocks, real outages.

Each helper takes a board URL (and the board's keyword options), drives one or more boards the
way conductors do, and raises ``AssertionError`` when the board breaks its contract. Worker
bodies are module-level functions so ``multiprocessing``'s spawn start method can import them.
Re-exported by ``legato.testing.jobboard``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from legato import errors
from legato import jobboard as jb
from legato.jobboard.base import Job, JobBoard, JobRecord

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from legato.testing.proxy import TCPProxy

__all__ = ["DeadOwnerResult", "run_claim_race", "run_dead_owner", "run_outage", "run_renewal"]


def finishing_calls(board: JobBoard, job: Job, who: str) -> list[Callable[[], object]]:
    """``renew``, ``consume``, ``abandon``, ``release`` and ``trash`` of ``job`` by ``who``, to
    try each."""
    return [lambda: board.renew(job, who), lambda: board.consume(job, who),
            lambda: board.abandon(job, who), lambda: board.release(job, who),
            lambda: board.trash(job, who)]


def until(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _connected(url: str, options: dict[str, Any]) -> JobBoard:
    board = jb.connect(url, **options)
    board.connect()
    return board


def _drain(board: JobBoard, who: str, consumed: list[str], failures: list[str]) -> None:
    while True:
        try:
            job = board.claim_next(who, ttl=120)
        except errors.JobFailure as exc:
            failures.append(f"claim_next: {exc!r}")
            return
        if job is None:
            return
        try:
            board.consume(job, who)
        except errors.JobFailure as exc:
            failures.append(f"consume {job.uuid}: {exc!r}")
            continue
        consumed.append(job.uuid)


def _drain_threads(board: JobBoard, tag: str, threads: int) -> tuple[list[str], list[str]]:
    consumed: list[str] = []  # list.append is atomic under the GIL
    failures: list[str] = []
    workers = [threading.Thread(target=_drain, args=(board, f"{tag}-t{i}", consumed, failures))
               for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return consumed, failures


def race_worker(url: str, options: dict[str, Any], threads: int, start: Any,
                conn: Connection) -> None:
    """Subprocess body of ``run_claim_race``: drain the board with ``threads`` threads."""
    board = _connected(url, options)
    try:
        start.wait(60)
        conn.send(_drain_threads(board, f"p{os.getpid()}", threads))
    finally:
        board.close()
        conn.close()


def run_claim_race(url: str, *, jobs: int = 1000, processes: int = 2, threads: int = 8,
                   **options: Any) -> dict[str, int]:
    """Post ``jobs`` jobs, then let ``processes`` x ``threads`` claimers drain the board with
    ``claim_next`` + ``consume``. ``processes=0`` runs the threads in this process (memory
    boards). Returns how many times each posted job was consumed; asserts exactly once each.
    """
    poster = _connected(url, options)
    try:
        posted = [poster.post(f"race-{i}").uuid for i in range(jobs)]
        if processes == 0:
            consumed, failures = _drain_threads(poster, "local", threads)
        else:
            consumed, failures = _race_in_processes(url, options, processes, threads)
        left = poster.job_count
    finally:
        poster.close()
    counts = Counter(consumed)
    result = {uuid: counts.get(uuid, 0) for uuid in posted}
    extra = set(counts) - set(result)
    twice = {u: n for u, n in result.items() if n != 1}
    assert not failures, f"claimers failed: {failures[:5]}"
    assert not extra, f"consumed jobs that were never posted: {sorted(extra)[:5]}"
    assert not twice, f"{len(twice)} jobs not consumed exactly once, e.g. {list(twice.items())[:5]}"
    assert left == 0, f"{left} jobs left on the board"
    return result


def _race_in_processes(url: str, options: dict[str, Any], processes: int,
                       threads: int) -> tuple[list[str], list[str]]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    pipes, procs = [], []
    for _ in range(processes):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=race_worker, args=(url, options, threads, start, child))
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    start.set()
    consumed: list[str] = []
    failures: list[str] = []
    for parent, proc in zip(pipes, procs, strict=True):
        try:
            got, failed = parent.recv()
        except EOFError:
            failed, got = [f"claimer process {proc.pid} died"], []
        consumed += got
        failures += failed
        proc.join(30)
    return consumed, failures


def dead_owner_worker(url: str, options: dict[str, Any], job_uuid: str, ttl: float,
                      conn: Connection) -> None:
    """Subprocess body of ``run_dead_owner``: claim, report, then hang until killed."""
    board = _connected(url, options)
    claimed = board.claim(board.get(job_uuid), "doomed-owner", ttl=ttl)
    conn.send((claimed.record.to_dict(), claimed.fence))
    threading.Event().wait(600)


@dataclasses.dataclass
class DeadOwnerResult:
    """What ``run_dead_owner`` measured."""

    old_fence: int
    new_fence: int
    reclaimed_after: float


def run_dead_owner(url: str, *, ttl: float = 2.0, **options: Any) -> DeadOwnerResult:
    """A subprocess claims a job with ``ttl`` and is SIGKILLed; this process must claim it
    within ``ttl + 1`` seconds of the claim, with a larger fence, and the dead owner's claim
    (its owner name and fence) must get ``NotOwner`` from renew/consume/abandon/trash."""
    board = _connected(url, options)
    try:
        job = board.post("orphan")
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=dead_owner_worker, args=(url, options, job.uuid, ttl, child))
        proc.start()
        child.close()
        if not parent.poll(60):
            proc.kill()
            raise AssertionError("the claiming subprocess never reported its claim")
        data, old_fence = parent.recv()
        claimed_at = time.monotonic()
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        new = _claim_within(board, job, claimed_at + ttl + 1.0)
        reclaimed_after = time.monotonic() - claimed_at
        assert new.fence is not None and new.fence > old_fence, (new.fence, old_fence)
        _assert_fenced_out(board, Job(board, JobRecord.from_dict(data), fence=old_fence),
                           "doomed-owner", "survivor")
        board.consume(new, "survivor")
        return DeadOwnerResult(old_fence, new.fence, reclaimed_after)
    finally:
        board.close()


def _claim_within(board: JobBoard, job: Job, deadline: float) -> Job:
    while True:
        try:
            return board.claim(job, "survivor", ttl=60)
        except errors.UnclaimableJob:
            if time.monotonic() > deadline:
                raise AssertionError(
                    "the dead owner's claim did not expire within ttl + 1 s") from None
            time.sleep(0.02)


def _assert_fenced_out(board: JobBoard, old: Job, who: str, actual: str) -> None:
    for call in finishing_calls(board, old, who):
        try:
            call()
        except errors.NotOwner as exc:
            assert exc.actual_owner == actual, (exc.actual_owner, actual)
        else:
            raise AssertionError("an expired claim was still accepted")


def run_renewal(url: str, *, ttl: float = 1.0, **options: Any) -> int:
    """Hold a claim for ``4 * ttl`` by renewing every ``ttl / 3`` while another board keeps
    trying to claim it; every one of its attempts must fail. Returns how many attempts failed.

    The TTL leaves the renewing thread two missed turns of slack: on a loaded machine a thread
    can wait a few hundred milliseconds for the CPU, and a test of renewal must not turn into a
    test of the scheduler."""
    holder, rival = _connected(url, options), _connected(url, options)
    try:
        job = holder.post("long job")
        claimed = holder.claim(job, "holder", ttl=ttl)
        stop = threading.Event()
        renew_errors: list[BaseException] = []

        def renew() -> None:
            while not stop.wait(ttl / 3):
                try:
                    holder.renew(claimed, "holder", ttl)
                except errors.JobFailure as exc:
                    renew_errors.append(exc)
                    return

        thread = threading.Thread(target=renew, daemon=True)
        thread.start()
        attempts = _keep_trying(rival, job, time.monotonic() + 4 * ttl, ttl / 4)
        stop.set()
        thread.join(10)
        assert not renew_errors, f"renew failed: {renew_errors[0]!r}"
        assert rival.find_owner(job) == "holder"
        holder.consume(claimed, "holder")
        return attempts
    finally:
        holder.close()
        rival.close()


def _keep_trying(rival: JobBoard, job: Job, until: float, every: float) -> int:
    attempts = 0
    while time.monotonic() < until:
        try:
            rival.claim(job, "rival", ttl=60)
        except errors.UnclaimableJob:
            attempts += 1
        else:
            raise AssertionError(f"a renewed claim was taken over after {attempts} attempts")
        time.sleep(every)
    return attempts


def run_outage(url: str, proxy: TCPProxy, *, timeout: float = 10.0,
               recover_within: float = 30.0, **options: Any) -> dict[str, float]:
    """Go through ``proxy``: cut it and check board calls raise a ``JobFailure`` subclass within
    ``timeout`` seconds; restore it and check the same board object works again and no job was
    lost. Returns the slowest failing call's duration (``slowest_failure``) and the recovery
    time (``recovered_after``)."""
    board = _connected(proxy.url_for(url), options)
    try:
        kept = board.post("before the outage")
        claimed = board.claim(board.post("claimed before"), "owner-a", ttl=300)
        proxy.cut()
        slowest = 0.0
        calls: list[Callable[[], object]] = [
            lambda: board.post("during"), lambda: board.claim_next("owner-b"),
            lambda: board.get(kept.uuid), lambda: list(board.iterjobs()),
            lambda: board.renew(claimed, "owner-a"), lambda: board.job_count]
        for call in calls:
            started = time.monotonic()
            try:
                call()
            except errors.JobFailure:
                pass
            else:
                raise AssertionError("a board call succeeded while the server was cut off")
            slowest = max(slowest, time.monotonic() - started)
        assert slowest <= timeout, f"a failing call took {slowest:.1f}s (limit {timeout}s)"
        proxy.restore()
        restored = time.monotonic()
        assert until(lambda: _works(board, kept), recover_within, 0.1), "never recovered"
        recovered_after = time.monotonic() - restored
        board.renew(claimed, "owner-a")
        board.consume(claimed, "owner-a")
        assert board.get(kept.uuid) == kept
        return {"slowest_failure": slowest, "recovered_after": recovered_after}
    finally:
        with contextlib.suppress(errors.LegatoError):
            board.close()


def _works(board: JobBoard, job: Job) -> bool:
    try:
        board.get(job.uuid)
    except errors.JobFailure:
        return False
    return True
