"""ZooKeeper jobboard against a real server: races between processes, dead owners, renewal,
undecodable nodes, and outages cut with a TCP proxy (short ones and ones that end the session)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kazoo import exceptions as kz
from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from legato import errors
from legato import jobboard as jb
from legato.conductor._renewal import Renewer
from legato.jobboard.base import CLAIMS_LOST, Entity, JobBoard
from legato.jobboard.zookeeper import ZooKeeperJobBoard, ZooKeeperSettings
from legato.jobboard.zookeeper.index import job_name_prefix
from legato.states import JobPriority, JobState
from legato.testing.jobboard import run_claim_race, run_dead_owner, run_outage, run_renewal
from legato.testing.jobboard_acceptance import until
from legato.testing.proxy import TCPProxy


def _hosts_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.netloc, parts.path


@pytest.fixture
def kazoo(zookeeper_url: str) -> Iterator[Any]:
    """A raw kazoo client on the test's server, for writing nodes behind the board's back."""
    client = KazooClient(hosts=_hosts_and_path(zookeeper_url)[0])
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def proxy(zookeeper_url: str) -> Iterator[TCPProxy]:
    host, _, port = _hosts_and_path(zookeeper_url)[0].split(",")[0].partition(":")
    with TCPProxy(host, int(port)) as running:
        yield running


def _connected(url: str, **options: Any) -> JobBoard:
    board = jb.connect(url, **options)
    board.connect()
    return board


# -- settings --------------------------------------------------------------------------------------


def test_settings_from_url() -> None:
    url = "zookeeper://zk1:2181,zk2:2182/apps/board?timeout=2.5&session_timeout=4&ttl=12"
    settings = ZooKeeperSettings.from_url(url)
    assert settings == ZooKeeperSettings(hosts="zk1:2181,zk2:2182", path="/apps/board",
                                         timeout=2.5, session_timeout=4.0)
    board = ZooKeeperJobBoard.from_url(url, session_timeout=3.0, name="b1")
    # The TTL is cut to the session timeout (a claim ends with its session anyway).
    assert board.settings.session_timeout == 3.0 and board.ttl == 3.0 and board.name == "b1"
    assert ZooKeeperJobBoard.from_url(url, session_timeout=20.0).ttl == 12.0
    assert ZooKeeperSettings.from_url("zookeeper://h:1").path == "/legato"
    with pytest.raises(ValueError):
        ZooKeeperSettings.from_url("zookeeper://h:1/p?colour=red")
    with pytest.raises(ValueError):
        ZooKeeperSettings(session_timeout=0)
    with pytest.raises(ValueError, match="credentials"):
        ZooKeeperSettings.from_url("zookeeper://user:secret@h:1/p")
    assert isinstance(jb.connect("zookeeper://h:1/p"), ZooKeeperJobBoard)


def test_unreachable_server_raises_board_unavailable() -> None:
    board = jb.connect("zookeeper://127.0.0.1:1/legato?timeout=0.5")
    with pytest.raises(errors.BoardUnavailable):
        board.connect()
    assert not board.connected


# -- acceptance: races, dead owners, renewal -------------------------------------------------------


@pytest.mark.slow
def test_claim_race_two_processes_eight_threads(zookeeper_url: str) -> None:
    counts = run_claim_race(zookeeper_url, jobs=1000, processes=2, threads=8)
    assert len(counts) == 1000 and set(counts.values()) == {1}


@pytest.mark.slow
def test_dead_owner_claim_ends_with_its_session(zookeeper_url: str) -> None:
    """The TTL (60 s) is far away: only the SIGKILLed owner's session ending frees the job."""
    result = run_dead_owner(zookeeper_url, ttl=60.0, session_timeout=2.0)
    assert result.new_fence > result.old_fence
    assert result.reclaimed_after < 30.0, "freed by the TTL, not by the session"


@pytest.mark.slow
def test_dead_owner_claim_ends_with_its_ttl(zookeeper_url: str) -> None:
    result = run_dead_owner(zookeeper_url, ttl=2.0, session_timeout=30.0)
    assert result.new_fence > result.old_fence


@pytest.mark.slow
def test_renewal_keeps_claim_for_four_ttls(zookeeper_url: str) -> None:
    assert run_renewal(zookeeper_url) >= 5


# -- undecodable nodes -----------------------------------------------------------------------------


def test_undecodable_job_nodes_are_skipped_and_kept(zookeeper_url: str, kazoo: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    board = _connected(zookeeper_url)
    try:
        first = board.post("first", priority=JobPriority.HIGH)
        jobs = f"{_hosts_and_path(zookeeper_url)[1]}/jobs"
        bad = kazoo.create(f"{jobs}/job-+2-bad-", b"{not json", sequence=True)
        wrong = kazoo.create(f"{jobs}/job-+2-wrong-", json.dumps({"name": 5}).encode(),
                             sequence=True)
        foreign = kazoo.create(f"{jobs}/stray", b"{}")
        last = board.post("last")
        caplog.set_level(logging.WARNING, logger="legato.jobboard")
        reader = _connected(zookeeper_url)
        assert [j.name for j in reader.iterjobs(ensure_fresh=True)] == ["first", "last"]
        assert list(reader.iterjobs(only_unclaimed=True)) == [first, last]
        claimed = [reader.claim_next("owner-a") for _ in range(3)]
        assert claimed == [first, last, None]
        for job in claimed[:2]:
            assert job is not None
            reader.consume(job, "owner-a")
        assert reader.wait(timeout=0.1) is False
        for path in (bad, wrong, foreign):
            assert kazoo.exists(path) is not None, f"{path} was deleted"
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert "cannot decode" in warned and "stray" in warned
        reader.close()
    finally:
        board.close()


def _job_node(**changes: Any) -> bytes:
    """A job node's data as the board writes it, with ``changes``; ``details`` given as JSON
    text is spliced in as it is."""
    data: dict[str, Any] = {"name": "garbage", "details": {}, "book_uuid": None,
                            "book_name": None, "priority": 0, "created_on": 1.0,
                            "last_modified": 1.0, "attempts": 0, "fence": 0,
                            "available_at": None, "reason": None}
    deep = changes.pop("deep", None)
    data.update(changes)
    text = json.dumps(data)
    if deep is not None:
        text = text.replace('"details": {}', f'"details": {deep}')
    return text.encode()


@pytest.mark.parametrize("kind", ["fence", "deep", "not utf-8", "not an object"])
def test_a_garbage_job_node_is_set_aside_and_the_jobs_after_it_flow(
        zookeeper_url: str, kazoo: Any, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A job node with ``"fence": "abc"`` or details nested 975 deep once stopped the whole
    board (``claim_next`` raised every time): it is skipped with one warning, kept, and the
    three jobs posted after it are claimed."""
    spoilt = "0badc0de-0000-4000-8000-000000000000"
    data = {"fence": _job_node(fence="abc"),
            "deep": _job_node(deep='{"a":' * 974 + "{}" + "}" * 974),
            "not utf-8": b'{"name": "\xff\xfe"}'.replace(b"\\x", b"\\x"),
            "not an object": b"[1, 2]"}[kind]
    if kind == "not utf-8":
        data = _job_node(name="X").replace(b'"X"', b'"\xff\xfe"')
    jobs = f"{_hosts_and_path(zookeeper_url)[1]}/jobs"
    poster = _connected(zookeeper_url)
    try:
        kazoo.ensure_path(jobs)
        path = kazoo.create(f"{jobs}/{job_name_prefix(0, spoilt)}", data, sequence=True)
        normal = [poster.post(f"normal-{i}").uuid for i in range(3)]
        assert [job.uuid for job in poster.iterjobs(ensure_fresh=True)] == normal
        caplog.set_level(logging.WARNING, logger="legato.jobboard")
        reader = _connected(zookeeper_url, name="reader")  # learns of the node by reading
        try:
            assert reader.job_count == 4
            claimed = [reader.claim_next("worker", ttl=30) for _ in range(5)]
            assert [job.uuid if job else None for job in claimed] == [*normal, None, None]
            for job in claimed[:3]:
                assert job is not None
                reader.consume(job, "worker")
            assert reader.claim_next("worker") is None
            assert reader.wait(timeout=0) is False
            assert reader.job_count == 1
        finally:
            reader.close()
        assert kazoo.exists(path) is not None, "set aside, never deleted"
        warned = [r.getMessage() for r in caplog.records
                  if spoilt in r.getMessage() and "'reader'" in r.getMessage()]
        assert len(warned) == 1, warned
    finally:
        poster.close()


def test_too_large_job_is_refused_and_long_reasons_are_cut(zookeeper_url: str) -> None:
    board = _connected(zookeeper_url)
    try:
        with pytest.raises(errors.JobFailure, match="at most"):
            board.post("huge", details={"blob": "x" * 1_020_000})
        assert board.job_count == 0
        small = board.post("small")
        assert small in list(board.iterjobs())
        board.trash(board.claim(small, "owner-a"), "owner-a", reason="traceback " * 200_000)
        (trashed,) = board.iter_trash()
        assert trashed.reason is not None and trashed.reason.startswith("traceback traceback")
        assert len(trashed.reason) < 20_000
    finally:
        board.close()


class _LosesOneReply(KazooClient):  # type: ignore[misc]
    """A kazoo client whose next transaction commits but whose reply is reported lost."""

    lose_next = False

    def transaction(self) -> Any:
        txn = super().transaction()
        if not _LosesOneReply.lose_next:
            return txn
        _LosesOneReply.lose_next = False
        commit = txn.commit_async

        def commit_async() -> Any:
            lost = self.handler.async_result()
            commit().rawlink(lambda _: lost.set_exception(kz.ConnectionLoss()))
            return lost

        txn.commit_async = commit_async
        return txn


def test_claim_whose_reply_was_lost_is_released(zookeeper_url: str) -> None:
    """A claim whose transaction committed but whose reply was lost: the caller is told the
    board is unavailable, and the board deletes that claim node once it can (nobody holds
    its fenced Job), so the job is free again."""
    board = _connected(zookeeper_url, kazoo_client=_LosesOneReply)
    other = _connected(zookeeper_url)
    try:
        job = board.post("work")
        _LosesOneReply.lose_next = True
        with pytest.raises(errors.BoardUnavailable):
            board.claim(job, "owner-a")
        assert other.find_owner(job) == "owner-a"  # the claim was made
        again = board.claim_next("owner-b")  # releases it first, so the job is free again
        assert again == job and again is not None and again.fence == 2  # after the lost one
        assert other.find_owner(job) == "owner-b"
    finally:
        board.close()
        other.close()


def test_entity_registered_twice_belongs_to_the_last_session(zookeeper_url: str) -> None:
    first, second = _connected(zookeeper_url), _connected(zookeeper_url)
    worker = Entity("conductor", "worker-1@host:1", {"pid": 1})
    moved = Entity("conductor", "worker-1@host:1", {"pid": 2})
    first.register_entity(worker)
    second.register_entity(moved)
    first.close()  # its session ends; the node now belongs to ``second``'s session
    try:
        assert list(second.iter_entities("conductor")) == [moved]
    finally:
        second.close()


# -- outages ---------------------------------------------------------------------------------------


def test_short_outage(zookeeper_url: str, proxy: TCPProxy) -> None:
    figures = run_outage(zookeeper_url, proxy, timeout=5.0, recover_within=20.0)
    assert figures["slowest_failure"] <= 5.0


def test_calls_during_outage_raise_board_unavailable(zookeeper_url: str,
                                                     proxy: TCPProxy) -> None:
    board = _connected(proxy.url_for(zookeeper_url), timeout=2.0)
    try:
        job = board.post("kept")
        proxy.cut()
        assert until(lambda: not _works(board, job.uuid), 10)
        for call in (lambda: board.post("x"), lambda: board.claim_next("owner-a"),
                     lambda: board.job_count, lambda: list(board.iter_entities()),
                     lambda: board.wait(timeout=1)):
            with pytest.raises(errors.BoardUnavailable):
                call()
        proxy.restore()
        assert until(lambda: _works(board, job.uuid), 20)
        assert board.claim_next("owner-a") == job
    finally:
        board.close()


def test_waiting_on_an_empty_board_reports_an_outage(zookeeper_url: str,
                                                    proxy: TCPProxy) -> None:
    board = _connected(proxy.url_for(zookeeper_url), timeout=2.0)
    try:
        proxy.cut()
        with pytest.raises(errors.BoardUnavailable):
            board.wait(timeout=30)
        proxy.restore()
        assert until(lambda: _answers(lambda: board.wait(timeout=0)) is False, 20)
    finally:
        board.close()


@pytest.mark.slow
def test_outage_longer_than_session(zookeeper_url: str, proxy: TCPProxy) -> None:
    """The session expires during the cut: claims end, and on reconnection the same board starts
    a new session, re-registers its entities and its watches work again. No job is lost."""
    board = _connected(proxy.url_for(zookeeper_url), session_timeout=1.0, timeout=2.0)
    observer = _connected(zookeeper_url)
    try:
        kept = board.post("kept")
        claimed = board.claim(board.post("claimed"), "owner-a", ttl=300)
        worker = Entity("conductor", "worker-1@host:1", {"pid": 1})
        board.register_entity(worker, ttl=300)
        proxy.cut()
        assert until(lambda: observer.find_owner(claimed) is None, 15), "session never expired"
        assert until(lambda: worker not in list(observer.iter_entities()), 15)
        proxy.restore()
        assert until(lambda: _works(board, kept.uuid), 20), "board never recovered"
        with pytest.raises(errors.NotOwner) as info:
            board.renew(claimed, "owner-a")
        assert info.value.actual_owner is None
        assert until(lambda: worker in list(observer.iter_entities()), 10)
        woke = threading.Event()
        waiter = threading.Thread(target=lambda: board.wait(timeout=20) and woke.set())
        board.claim(kept, "owner-b")  # nothing claimable now except what ``observer`` posts
        board.claim(claimed, "owner-b")
        waiter.start()
        fresh = observer.post("after the outage")
        waiter.join(25)
        assert woke.is_set()
        assert observer.job_count == 3
        assert board.claim_next("owner-b") == fresh
    finally:
        board.close()
        observer.close()


def _answers(call: Any) -> Any:
    """``call()``'s result, or None while the board is unavailable."""
    try:
        return call()
    except errors.BoardUnavailable:
        return None


def _works(board: JobBoard, job_uuid: str) -> bool:
    try:
        board.get(job_uuid)
    except errors.JobFailure:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["own-client", "shared-client"])
def test_owner_whose_session_expired_cannot_take_the_claim_back(zookeeper_url: str,
                                                                proxy: TCPProxy,
                                                                shared: bool) -> None:
    """A is cut from the server past its session; B claims the job (fence 2). Once A is back on
    a new session, A's renew and consume with fence 1 are refused, and B's go through. (The
    new owner's claim node starts again at version 0, which A's remembered version matched.)
    The same when A was given a started kazoo client (``client=``) instead of making its own."""
    cut_url = proxy.url_for(zookeeper_url)
    client = None
    if shared:
        client = KazooClient(hosts=_hosts_and_path(cut_url)[0], timeout=4.0,
                             connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=1.0))
        client.start(timeout=10)
        a = _connected(cut_url, client=client, timeout=2.0)
    else:
        a = _connected(cut_url, session_timeout=4.0, timeout=2.0)
    b = _connected(zookeeper_url)
    try:
        old = a.claim(a.post("contested"), "worker", ttl=30)
        assert old.fence == 1
        proxy.cut()
        new = None

        def claimed_by_b() -> bool:
            nonlocal new
            try:
                new = b.claim(old, "worker", ttl=30)
            except errors.UnclaimableJob:
                return False
            return True

        assert until(claimed_by_b, 30), "A's session never expired"
        assert new is not None and new.fence == 2
        proxy.restore()
        assert until(lambda: _works(a, old.uuid), 30), "A never reconnected"
        with pytest.raises(errors.NotOwner):
            a.renew(old, "worker")
        with pytest.raises(errors.NotOwner):
            a.consume(old, "worker")
        b.renew(new, "worker")
        b.consume(new, "worker")
        assert b.job_count == 0
    finally:
        a.close()
        b.close()
        if client is not None:
            client.stop()
            client.close()


def test_default_ttl_and_trusted_lease_are_capped_at_the_session_timeout(
        zookeeper_url: str) -> None:
    """A claim ends with its session: the default TTL and the lease a conductor trusts are at
    most the session timeout, whatever TTL is asked for."""
    board = _connected(zookeeper_url, session_timeout=4.0)
    longer = jb.connect(zookeeper_url, session_timeout=4.0, ttl=60)
    try:
        assert board.ttl == 4.0 and longer.ttl == 4.0 and board.lease_cap == 4.0
        job = board.claim(board.post("work"), "worker", ttl=30)
        renewer = Renewer(board, "worker", period=1.0)
        lease = renewer.add(job, 30.0, claimed_at=time.monotonic())
        assert lease.trusted_for == 4.0 and lease.trusted()
        assert jb.connect("memory://", ttl=60).lease_cap is None
    finally:
        board.close()


@pytest.mark.slow
def test_lease_is_not_trusted_once_the_session_may_have_ended(zookeeper_url: str,
                                                              proxy: TCPProxy) -> None:
    """A conductor's board is cut from the server with a 30 s lease and a 4 s session: by the
    time another board can claim the job, the lease is no longer trusted; once the board is
    back on a new session, the lease is marked lost (``CLAIMS_LOST``)."""
    a = _connected(proxy.url_for(zookeeper_url), session_timeout=4.0, timeout=2.0)
    b = _connected(zookeeper_url)
    reports: list[str] = []
    a.notifier.register(CLAIMS_LOST, lambda event, details: reports.append(details["reason"]))
    renewer = Renewer(a, "worker", period=0.5)
    renewer.start()
    try:
        job = a.claim(a.post("work"), "worker", ttl=30)
        lease = renewer.add(job, 30.0, claimed_at=time.monotonic())
        proxy.cut()
        trusted_when_taken: list[bool] = []

        def taken() -> bool:
            try:
                b.claim(job, "other", ttl=30)
            except errors.UnclaimableJob:
                return False
            trusted_when_taken.append(lease.trusted())
            return True

        assert until(taken, 30), "A's session never expired"
        assert trusted_when_taken == [False]
        proxy.restore()
        assert until(lease.lost.is_set, 30)
        assert reports
    finally:
        renewer.stop()
        a.close()
        b.close()


def test_clock_skew_neither_ends_a_live_claim_nor_keeps_an_expired_one(
        zookeeper_url: str) -> None:
    """B's clock runs 40 s ahead of A's. B never claims A's renewed claim, and sees it held;
    A's renewals work; once A releases it, B claims it. A claim B then stops renewing ends
    after its TTL on the server's clock, not 40 s later on A's."""
    a = _connected(zookeeper_url)
    b = _connected(zookeeper_url, clock=lambda: time.time() + 40)
    try:
        job = a.post("work")
        held = a.claim(job, "worker-a", ttl=30)
        with pytest.raises(errors.UnclaimableJob):
            b.claim(job, "worker-b")
        assert b.claim_next("worker-b") is None
        assert b.find_owner(job) == "worker-a" and b.state_of(job) is JobState.CLAIMED
        a.renew(held, "worker-a")
        with pytest.raises(errors.UnclaimableJob):
            b.claim(job, "worker-b")
        a.renew(held, "worker-a")
        a.release(held, "worker-a")
        taken = b.claim(job, "worker-b", ttl=2)
        assert taken.fence == 2
        with pytest.raises(errors.NotOwner):
            a.renew(held, "worker-a")
        again: list[Any] = []

        def claimed_by_a() -> bool:
            try:
                again.append(a.claim(job, "worker-a", ttl=30))
            except errors.UnclaimableJob:
                return False
            return True

        assert until(claimed_by_a, 20), "B's claim did not end after its TTL"
        assert again[0].fence == 3
        with pytest.raises(errors.NotOwner):
            b.renew(taken, "worker-b")
        a.consume(again[0], "worker-a")
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_renewer_keeps_a_long_ttl_lease_trusted_past_the_session_timeout(
        zookeeper_url: str) -> None:
    """A conductor with a 30 s TTL (renewing every 5 s) on a 2 s session renews often enough
    that the lease, capped at the session timeout, never lapses while the board answers."""
    board = _connected(zookeeper_url, session_timeout=2.0)
    renewer = Renewer(board, "worker", period=5.0)
    renewer.start()
    try:
        job = board.claim(board.post("work"), "worker", ttl=30)
        lease = renewer.add(job, 30.0, claimed_at=time.monotonic())
        end = time.monotonic() + 3 * board.lease_cap
        while time.monotonic() < end:  # sampled over three session timeouts
            assert lease.trusted()
            time.sleep(0.05)
        board.consume(job, "worker")
    finally:
        renewer.stop()
        board.close()


@pytest.mark.slow
def test_connection_suspended_past_the_session_timeout_loses_every_claim(
        zookeeper_url: str, proxy: TCPProxy) -> None:
    """Cut for good: the board cannot hear that its session ended, yet once its connection has
    been suspended for the session timeout it reports ``CLAIMS_LOST`` and a conductor's leases
    are marked lost."""
    board = _connected(proxy.url_for(zookeeper_url), session_timeout=2.0, timeout=2.0)
    reports: list[str] = []
    board.notifier.register(CLAIMS_LOST, lambda event, details: reports.append(details["reason"]))
    renewer = Renewer(board, "worker", period=60.0)  # never renews: only the report can tell
    renewer.start()
    try:
        job = board.claim(board.post("work"), "worker", ttl=30)
        lease = renewer.add(job, 30.0, claimed_at=time.monotonic() + 3600)  # deadline far off
        proxy.cut()
        assert until(lease.lost.is_set, 20)
        assert reports and "suspended" in reports[0]
        with pytest.raises(errors.BoardUnavailable):
            board.get(job.uuid)  # still cut off
    finally:
        renewer.stop()
        proxy.restore()
        board.close()
