"""Redis jobboard beyond the shared suite: real processes, garbage, outages, Lua atomicity."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis

from legato import errors, jobboard
from legato.jobboard.base import Job, JobBoard
from legato.jobboard.redis import RedisJobBoard, RedisSettings
from legato.states import JobState
from legato.testing import jobboard as suite
from legato.testing.clock import FakeClock
from legato.testing.jobboard import JobBoardConformance, MakeBoard, board_factory
from legato.testing.jobboard_acceptance import until
from legato.testing.proxy import TCPProxy


def _namespace(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["namespace"]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the same server, to look at and tamper with the board's keys."""
    client = redis.Redis.from_url(redis_url.split("?", 1)[0], decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def board(redis_url: str) -> Iterator[JobBoard]:
    with jobboard.connect(redis_url, ttl=30) as connected:
        yield connected


# -- settings ----------------------------------------------------------------------------------

def test_settings_from_url() -> None:
    settings = RedisSettings.from_url(
        "rediss://user:p%40ss@redis.example:6380/3?namespace=jobs&socket_timeout=1.5"
        "&page_size=50")
    assert (settings.host, settings.port, settings.db) == ("redis.example", 6380, 3)
    assert (settings.username, settings.password, settings.ssl) == ("user", "p@ss", True)
    assert (settings.namespace, settings.socket_timeout, settings.page_size) == (
        "jobs", 1.5, 50)
    with pytest.raises(ValueError, match="bogus"):
        RedisSettings.from_url("redis://localhost/0?bogus=1")


def test_connect_picks_board_options_from_url(redis_url: str) -> None:
    board = jobboard.connect(redis_url + "&ttl=7&poll_interval=0.25", socket_timeout=2.0)
    assert isinstance(board, RedisJobBoard)
    assert (board.ttl, board.poll_interval) == (7.0, 0.25)
    assert board.settings.socket_timeout == 2.0
    assert board.settings.namespace == _namespace(redis_url)


def test_unreachable_server_raises_board_unavailable() -> None:
    with TCPProxy("127.0.0.1", 6379) as proxy:
        proxy.cut()
        board = jobboard.connect(f"redis://127.0.0.1:{proxy.port}/0?namespace=never")
        with pytest.raises(errors.BoardUnavailable) as info:
            board.connect()
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert not board.connected


# -- acceptance helpers: real processes --------------------------------------------------------

@pytest.mark.slow
def test_claim_race_two_processes_exactly_once(redis_url: str) -> None:
    counts = suite.run_claim_race(redis_url, jobs=1000, processes=2, threads=8)
    assert len(counts) == 1000 and set(counts.values()) == {1}


@pytest.mark.slow
def test_dead_owner_claim_expires_with_higher_fence(redis_url: str) -> None:
    result = suite.run_dead_owner(redis_url, ttl=1.0)
    assert result.new_fence > result.old_fence


@pytest.mark.slow
def test_renewed_claim_survives_ten_ttls(redis_url: str) -> None:
    assert suite.run_renewal(redis_url) > 0


@pytest.mark.slow
def test_outage_through_proxy(redis_url: str) -> None:
    with TCPProxy("127.0.0.1", 6379) as proxy:
        figures = suite.run_outage(redis_url, proxy, timeout=5.0, recover_within=10.0,
                                   socket_timeout=2.0)
    assert figures["slowest_failure"] <= 5.0


def test_wake_ups_resume_after_outage(redis_url: str, raw: redis.Redis) -> None:
    """After a cut and restore, the board's pub/sub listener resubscribes by itself and a post
    from another board wakes it again."""
    channel = f"{_namespace(redis_url)}:events"

    def subscribers() -> int:
        return int(dict(raw.pubsub_numsub(channel))[channel])

    with TCPProxy("127.0.0.1", 6379) as proxy, \
            jobboard.connect(proxy.url_for(redis_url), poll_interval=60) as waiter, \
            jobboard.connect(redis_url) as poster:
        assert until(lambda: subscribers() == 2, 5)
        proxy.cut()
        with pytest.raises(errors.BoardUnavailable):
            waiter.post("during the outage")
        assert until(lambda: subscribers() == 1, 5)
        proxy.restore()
        assert until(lambda: subscribers() == 2, 10), "listener never resubscribed"
        # Polling would take 60 s: only the listener can wake the waiter sooner.
        woke = threading.Event()
        waiting = threading.Thread(target=lambda: waiter.wait(30) and woke.set(), daemon=True)
        waiting.start()
        poster.post("wake up")
        assert woke.wait(20), "a post did not wake the waiter"
        assert [j.name for j in waiter.iterjobs()] == ["wake up"]


# -- Lua atomicity ----------------------------------------------------------------------------

def test_many_boards_claim_one_job_exactly_one_wins(redis_url: str) -> None:
    boards = [jobboard.connect(redis_url) for _ in range(12)]
    for b in boards:
        b.connect()
    try:
        job = boards[0].post("contested")
        barrier = threading.Barrier(len(boards))
        won: list[str] = []
        lost: list[str] = []

        def contend(i: int) -> None:
            barrier.wait()
            try:
                boards[i].claim(job, f"owner-{i}")
                won.append(f"owner-{i}")
            except errors.UnclaimableJob:
                lost.append(f"owner-{i}")

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(boards))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1 and len(lost) == len(boards) - 1
        assert boards[0].find_owner(job) == won[0]
        assert boards[0].get(job.uuid).attempts == 1
    finally:
        for b in boards:
            b.close()


def test_expired_claims_beyond_one_housekeeping_batch_all_come_back(redis_url: str) -> None:
    clock = FakeClock()
    with jobboard.connect(redis_url, clock=clock) as board:
        posted = {board.post(f"job-{i}").uuid for i in range(250)}
        while board.claim_next("doomed", ttl=5) is not None:
            pass
        clock.advance(6)
        again = set()
        while (job := board.claim_next("survivor", ttl=60)) is not None:
            assert job.attempts == 2
            again.add(job.uuid)
        assert again == posted


# -- garbage ------------------------------------------------------------------------------------

def _corrupt(raw: redis.Redis, ns: str, board: JobBoard) -> dict[str, str]:
    """Post three jobs and spoil them in three ways; return label -> uuid."""
    spoilt = {label: board.post(label).uuid for label in ("json", "wrongtype", "missing")}
    raw.hset(f"{ns}:job:{spoilt['json']}", "details", "{not json")
    raw.delete(f"{ns}:job:{spoilt['wrongtype']}")
    raw.set(f"{ns}:job:{spoilt['wrongtype']}", "a string where a hash belongs")
    raw.hdel(f"{ns}:job:{spoilt['missing']}", "name", "priority")
    return spoilt


def test_garbage_is_skipped_by_iteration_and_claim_next_never_deleted(
        redis_url: str, raw: redis.Redis, board: JobBoard,
        caplog: pytest.LogCaptureFixture) -> None:
    ns = _namespace(redis_url)
    first = board.post("good-1")
    spoilt = _corrupt(raw, ns, board)
    last = board.post("good-2")
    with caplog.at_level(logging.WARNING, logger="legato.jobboard.redis"):
        assert list(board.iterjobs()) == [first, last]
    assert sum("undecodable" in r.getMessage() for r in caplog.records) == 3
    claimed = [board.claim_next("worker"), board.claim_next("worker"), board.claim_next("worker")]
    assert claimed[:2] == [first, last] and claimed[2] is None
    for uuid in spoilt.values():
        assert raw.exists(f"{ns}:job:{uuid}") == 1
        assert raw.zscore(f"{ns}:bad", uuid) is not None
    assert raw.type(f"{ns}:job:{spoilt['wrongtype']}") == "string"
    with pytest.raises(errors.JobFailure):
        board.get(spoilt["json"])
    with pytest.raises(errors.JobFailure):
        board.claim(board.get(first.uuid), "other")


def test_claim_next_gets_past_a_long_run_of_garbage(redis_url: str, raw: redis.Redis,
                                                    board: JobBoard) -> None:
    ns = _namespace(redis_url)
    uuids = [board.post(f"bad-{i}").uuid for i in range(150)]
    for uuid in uuids:
        raw.hset(f"{ns}:job:{uuid}", "state", '"EXPLODED"')
    good = board.post("good")
    assert board.claim_next("worker") == good
    assert board.claim_next("worker") is None
    assert raw.zcard(f"{ns}:bad") == 150


def test_consume_and_claim_next_sets_garbage_aside_and_claims_past_it(
        redis_url: str, raw: redis.Redis, board: JobBoard) -> None:
    ns = _namespace(redis_url)
    first = board.post("first")
    spoilt = _corrupt(raw, ns, board)
    late = board.post("unreadable creation time")
    raw.hset(f"{ns}:job:{late.uuid}", "created_on", "][")
    last = board.post("last")
    held = board.claim(first, "worker")
    nxt = board.consume_and_claim_next(held, "worker")
    assert nxt == last and nxt is not None and nxt.attempts == 1
    assert board.state_of(first) is JobState.COMPLETE
    for uuid in [*spoilt.values(), late.uuid]:
        assert raw.exists(f"{ns}:job:{uuid}") == 1
        assert raw.zscore(f"{ns}:bad", uuid) is not None
    assert raw.zcard(f"{ns}:ready") == 0


@pytest.mark.parametrize(("field", "value"), [
    ("book_name", '"x","details":{"injected":true}'),
    ("reason", 'null,"details":{"injected":true}'),
    ("sequence", '1,"details":{"injected":true}'),
])
def test_a_stored_value_cannot_add_fields_to_a_claimed_job(
        redis_url: str, raw: redis.Redis, board: JobBoard, field: str, value: str) -> None:
    """A claim's reply splices the stored JSON values into one object: a value that is not one
    JSON value would add fields to it, so such a job is set aside, never claimed."""
    ns = _namespace(redis_url)

    def spoilt_then_good() -> tuple[str, Job]:
        spoilt = board.post("spoilt", details={"real": True})
        raw.hset(f"{ns}:job:{spoilt.uuid}", field, value)
        return spoilt.uuid, board.post("good", details={"real": True})

    first_spoilt, first_good = spoilt_then_good()
    got = board.claim_next("worker")
    assert got == first_good and got is not None and got.details == {"real": True}
    second_spoilt, second_good = spoilt_then_good()
    following = board.consume_and_claim_next(got, "worker")
    assert following == second_good and following is not None
    assert following.details == {"real": True}
    for uuid in (first_spoilt, second_spoilt):
        assert raw.zscore(f"{ns}:bad", uuid) is not None
        assert raw.exists(f"{ns}:job:{uuid}") == 1


def test_finishing_a_claim_whose_claim_fields_are_garbage_is_refused(
        redis_url: str, raw: redis.Redis, board: JobBoard) -> None:
    """consume and the other owner checks read only the claim's fields; garbage there is a
    ``JobFailure`` and the entry stays where it is."""
    ns = _namespace(redis_url)
    fence_spoilt = board.claim(board.post("fence"), "worker")
    raw.hset(f"{ns}:job:{fence_spoilt.uuid}", "fence", '"seven"')
    lease_spoilt = board.claim(board.post("lease"), "worker")
    raw.hset(f"{ns}:job:{lease_spoilt.uuid}", "lease_expires", "soon")
    not_a_hash = board.claim(board.post("string"), "worker")
    raw.delete(f"{ns}:job:{not_a_hash.uuid}")
    raw.set(f"{ns}:job:{not_a_hash.uuid}", "a string where a hash belongs")
    for job in (fence_spoilt, lease_spoilt, not_a_hash):
        with pytest.raises(errors.JobFailure) as info:
            board.consume(job, "worker")
        assert "cannot be decoded" in str(info.value)
        with pytest.raises(errors.JobFailure):
            board.consume_and_claim_next(job, "worker")
        with pytest.raises(errors.JobFailure):
            board.renew(job, "worker")
        assert raw.exists(f"{ns}:job:{job.uuid}") == 1
        assert raw.zscore(f"{ns}:jobs", job.uuid) is not None


_DEEP = '{"a":' * 974 + "{}" + "}" * 974  # 975 levels: the scripts' decoder takes it

_REDIS_GARBAGE: dict[str, dict[str, str]] = {
    "deep": {"details": _DEEP},
    "deeper than the scripts decode": {"details": "[" * 5000 + "]" * 5000},
    "bad fence": {"fence": '"abc"'},
    "bad fields": {"name": "5", "created_on": '"yesterday"', "attempts": "1.5"},
}


@pytest.mark.parametrize("kind", list(_REDIS_GARBAGE))
@pytest.mark.parametrize("via", ["claim_next", "consume_and_claim_next"])
def test_a_garbage_job_is_set_aside_once_and_the_jobs_after_it_flow(
        redis_url: str, raw: redis.Redis, board: JobBoard, kind: str, via: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Details nested 975 deep passed the scripts' checks and then failed to decode in the
    client, claimed each time the lease lapsed, forever: now any record the client cannot
    decode is set aside (the "bad" set) once, and the jobs after it are claimed."""
    ns = _namespace(redis_url)
    first = board.post("first")
    spoilt = board.post("spoilt").uuid
    raw.hset(f"{ns}:job:{spoilt}", mapping=_REDIS_GARBAGE[kind])
    normal = [board.post(f"normal-{i}").uuid for i in range(3)]
    caplog.set_level(logging.WARNING, logger="legato.jobboard")
    assert [job.uuid for job in board.iterjobs()] == [first.uuid, *normal]
    held = board.claim(first, "worker", ttl=0.5)
    claimed = []
    if via == "consume_and_claim_next":
        nxt = board.consume_and_claim_next(held, "worker", ttl=0.5)
        claimed.append(nxt.uuid if nxt is not None else None)
    for _ in range(3):
        job = board.claim_next("worker", ttl=0.5)
        claimed.append(job.uuid if job is not None else None)
    assert [uuid for uuid in claimed if uuid is not None] == normal
    assert raw.zscore(f"{ns}:bad", spoilt) is not None
    for index in ("ready", "claimed", "delayed"):
        assert raw.zscore(f"{ns}:{index}", spoilt) is None
    assert raw.exists(f"{ns}:job:{spoilt}") == 1, "set aside, never deleted"
    with pytest.raises(errors.GarbageRecord):
        board.get(spoilt)
    assert until(lambda: board.wait(timeout=0), 10)  # a lease lapsed: something to claim
    again = board.claim_next("worker", ttl=30)
    assert again is None or again.uuid != spoilt
    assert raw.zscore(f"{ns}:bad", spoilt) is not None


def test_waiting_sets_aside_garbage_only_the_client_cannot_decode(
        redis_url: str, raw: redis.Redis, board: JobBoard,
        caplog: pytest.LogCaptureFixture) -> None:
    """Details 975 deep pass the scripts' checks: a waiter that met them at the head of
    "ready" warned about them on every poll; it sets them aside the first time."""
    ns = _namespace(redis_url)
    spoilt = board.post("spoilt")
    raw.hset(f"{ns}:job:{spoilt.uuid}", "details", _DEEP)
    caplog.set_level(logging.WARNING, logger="legato.jobboard")
    for _ in range(3):
        assert board.wait(timeout=0) is False
    assert raw.zscore(f"{ns}:bad", spoilt.uuid) is not None
    assert raw.zcard(f"{ns}:ready") == 0
    assert sum(spoilt.uuid in r.getMessage() for r in caplog.records) == 1


def test_text_that_is_not_utf8_is_read_with_replacement_characters(
        redis_url: str, raw: redis.Redis, board: JobBoard) -> None:
    """A reply the client cannot decode used to fail after the script had claimed the job (so
    it was claimed again, and again): stored bytes that are not UTF-8 read as U+FFFD."""
    ns = _namespace(redis_url)
    spoilt = board.post("spoilt", details={"k": "v"})
    raw.hset(f"{ns}:job:{spoilt.uuid}", "details", b'{"k": "\xff\xfe"}')
    after = board.post("after")
    got = board.claim_next("worker")
    assert got == spoilt and got is not None and got.details == {"k": "\ufffd\ufffd"}
    assert board.claim_next("worker") == after
    assert [job.uuid for job in board.iterjobs()] == [spoilt.uuid, after.uuid]


# -- scripts and replies read later ---------------------------------------------------------

def test_scripts_are_loaded_again_after_a_script_flush(raw: redis.Redis,
                                                       board: JobBoard) -> None:
    first, second = board.post("first"), board.post("second")
    raw.script_flush()
    held = board.claim_next("worker")
    assert held == first and held is not None
    raw.script_flush()
    assert board.consume_and_claim_next(held, "worker") == second


def test_other_calls_go_on_while_an_async_reply_is_unread(raw: redis.Redis,
                                                          board: JobBoard) -> None:
    """An unread reply holds up nothing: other calls, from this thread or another, are made
    and the reply still reads right afterwards. With the scripts flushed, the sent call did not
    run (NOSCRIPT): ``result()`` loads the script and makes it then."""
    first, second = board.post("first"), board.post("second")
    held = board.claim(first, "worker")
    raw.script_flush()
    pending = board.consume_and_claim_next_async(held, "worker")
    third = board.post("third")
    elsewhere: list[Job | None] = []
    worker = threading.Thread(target=lambda: elsewhere.append(board.claim_next("other")))
    worker.start()
    worker.join(30)
    assert elsewhere == [second]
    assert pending.result() == third  # "second" was taken by the other thread meanwhile
    assert board.job_count == 2


def test_an_async_reply_is_read_once_by_any_thread(board: JobBoard) -> None:
    first, second, third = board.post("first"), board.post("second"), board.post("third")
    held = board.claim(first, "worker")
    pending = board.consume_and_claim_next_async(held, "worker")
    answers: list[Job | None] = []
    reader = threading.Thread(target=lambda: answers.append(pending.result()))
    reader.start()
    reader.join(30)
    assert answers == [second]
    assert pending.result() == second  # the same answer again, not a second read
    assert answers[0] is not None
    assert board.consume_and_claim_next(answers[0], "worker") == third
    assert board.job_count == 1


def test_an_async_call_loads_a_flushed_script(raw: redis.Redis, board: JobBoard) -> None:
    """The NOSCRIPT reply is read by ``result()``, which loads the script and runs it."""
    first, second = board.post("first"), board.post("second")
    held = board.claim(first, "worker")
    raw.script_flush()
    pending = board.consume_and_claim_next_async(held, "worker")
    assert pending.result() == second
    assert board.state_of(first) is JobState.COMPLETE


def test_an_async_call_during_an_outage_fails_from_result_then_work_goes_on(
        redis_url: str) -> None:
    with TCPProxy("127.0.0.1", 6379) as proxy, \
            jobboard.connect(proxy.url_for(redis_url), socket_timeout=2.0) as board:
        first, second = board.post("first"), board.post("second")
        held = board.claim(first, "worker")
        proxy.cut()
        pending = board.consume_and_claim_next_async(held, "worker")
        for _ in range(2):
            with pytest.raises(errors.BoardUnavailable) as info:
                pending.result()
            assert isinstance(info.value.__cause__, redis.ConnectionError)
        proxy.restore()
        assert board.consume_and_claim_next_async(held, "worker").result() == second
        assert board.job_count == 1


def test_closing_the_board_does_not_wait_for_an_unread_async_reply(redis_url: str) -> None:
    board = jobboard.connect(redis_url)
    board.connect()
    try:
        held = board.claim(board.post("first"), "worker")
        pending = board.consume_and_claim_next_async(held, "worker")
    finally:
        board.close()
    with pytest.raises(errors.BoardUnavailable):
        pending.result()


def test_a_script_connection_the_server_closed_is_replaced(redis_url: str) -> None:
    """Like a pooled connection at check-out, the kept one is replaced when the server side
    has closed it: the next call works, with no error."""
    with TCPProxy("127.0.0.1", 6379) as proxy, \
            jobboard.connect(proxy.url_for(redis_url)) as board:
        job = board.post("before")
        proxy.cut()
        proxy.restore()
        held = board.claim_next("worker")
        assert held == job and held is not None
        proxy.cut()
        proxy.restore()
        assert board.consume_and_claim_next(held, "worker") is None
        assert board.job_count == 0


def test_an_async_connection_the_server_closed_is_replaced(redis_url: str) -> None:
    """The connection an async call gives back is kept for the next one; when the server
    side has closed it meanwhile, the next async call reconnects, with no error."""
    with TCPProxy("127.0.0.1", 6379) as proxy, \
            jobboard.connect(proxy.url_for(redis_url), socket_timeout=2.0) as board:
        first, second, third = board.post("first"), board.post("second"), board.post("third")
        held = board.claim(first, "worker")
        following = board.consume_and_claim_next_async(held, "worker").result()
        assert following == second and following is not None
        proxy.cut()
        proxy.restore()
        assert board.consume_and_claim_next_async(following, "worker").result() == third
        assert board.job_count == 1


def test_script_calls_during_an_outage_fail_then_work_again(redis_url: str) -> None:
    with TCPProxy("127.0.0.1", 6379) as proxy, \
            jobboard.connect(proxy.url_for(redis_url), socket_timeout=2.0) as board:
        job = board.post("before")
        held = board.claim(job, "worker")
        proxy.cut()
        with pytest.raises(errors.BoardUnavailable) as info:
            board.consume_and_claim_next(held, "worker")
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        with pytest.raises(errors.BoardUnavailable):
            board.claim_next("worker")
        proxy.restore()
        assert board.consume_and_claim_next(held, "worker") is None
        assert board.job_count == 0


def test_garbage_entity_is_skipped(redis_url: str, raw: redis.Redis, board: JobBoard) -> None:
    ns = _namespace(redis_url)
    board.register_entity(jobboard.Entity("conductor", "ok@host:1"))
    board.register_entity(jobboard.Entity("conductor", "spoilt@host:2"))
    raw.hset(f"{ns}:entities", "spoilt@host:2", "][")
    assert [e.name for e in board.iter_entities()] == ["ok@host:1"]


# -- layout promises ------------------------------------------------------------------------

def test_claim_next_leaves_other_jobs_untouched(redis_url: str, raw: redis.Redis,
                                                board: JobBoard) -> None:
    """The index keeps claimed jobs out of "ready": the next claim reads only its first entry."""
    ns = _namespace(redis_url)
    jobs = [board.post(f"job-{i}") for i in range(5)]
    claimed = board.claim_next("worker")
    assert claimed == jobs[0]
    assert raw.zrange(f"{ns}:ready", 0, -1) == [j.uuid for j in jobs[1:]]
    assert raw.zrange(f"{ns}:claimed", 0, -1) == [jobs[0].uuid]
    assert raw.zcard(f"{ns}:jobs") == 5


def test_post_publishes_an_event(redis_url: str, raw: redis.Redis, board: JobBoard) -> None:
    pubsub: Any = raw.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(f"{_namespace(redis_url)}:events")
    try:
        job = board.post("announce")
        message = None
        for _ in range(50):
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                break
        assert message is not None and message["data"] == f"posted {job.uuid}"
    finally:
        pubsub.close()


def test_removal_wakes_a_completion_waiter_not_the_work_channel(
        redis_url: str, raw: redis.Redis, board: JobBoard) -> None:
    """Consume publishes on the job's own removal channel: a ``wait_for_completion`` caller
    wakes, subscribers of the main channel (idle conductors) do not."""
    ns = _namespace(redis_url)
    pubsub: Any = raw.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(f"{ns}:events")
    job = board.post("finish me")
    claimed = board.claim_next("worker")
    assert claimed == job and claimed is not None
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(board.wait_for_completion(job, 60)))
    try:
        assert until(lambda: (pubsub.get_message(timeout=0.1) or {}).get("data")
                     == f"posted {job.uuid}", 10)
        waiter.start()
        assert until(lambda: f"{ns}:events:removed:{job.uuid}" in raw.pubsub_channels(), 10)
        board.consume(claimed, "worker")
        waiter.join(10)
        assert result == [True]
        assert pubsub.get_message(timeout=0.2) is None
    finally:
        pubsub.close()
    assert board.wait_for_completion(job, 0.01) is True


# -- Sentinel ---------------------------------------------------------------------------------

def test_sentinel_url_parsing() -> None:
    settings = RedisSettings.from_url(
        "redis+sentinel://:secret@s1:26379,s2:26380,s3/primary/2?namespace=jobs")
    assert settings.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (settings.service, settings.db, settings.password) == ("primary", 2, "secret")
    assert settings.namespace == "jobs"
    with pytest.raises(ValueError):
        RedisSettings.from_url("redis+sentinel://s1:26379/")


@pytest.fixture(scope="module")
def sentinel_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Redis Sentinel (``redis-server --sentinel``) watching the test Redis."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, so no Sentinel can be started")
        pytest.skip("redis-server is not installed, so no Sentinel can be started")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    folder = tmp_path_factory.mktemp("sentinel")
    conf = folder / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                    "sentinel monitor legato-test 127.0.0.1 6379 1\n"
                    "sentinel down-after-milliseconds legato-test 600000\n")
    proc = subprocess.Popen([server, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        probe_client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)

        def knows_master() -> bool:
            try:
                return bool(probe_client.sentinel_get_master_addr_by_name("legato-test"))
            except redis.RedisError:
                return False

        assert until(knows_master, 10, 0.05), "Sentinel did not start"
        probe_client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


class TestRedisThroughSentinel(suite.RedisWipeable, JobBoardConformance):
    fake_clock = True

    @pytest.fixture
    def make_board(self, redis_url: str, sentinel_port: int) -> Iterator[MakeBoard]:
        query = redis_url.split("?", 1)[1]
        url = f"redis+sentinel://127.0.0.1:{sentinel_port}/legato-test/0?{query}"
        with board_factory(url) as make:
            yield make


def test_waiting_sets_aside_garbage_at_the_head_of_ready(
        redis_url: str, raw: redis.Redis, board: JobBoard) -> None:
    ns = _namespace(redis_url)
    spoilt = board.post("spoilt")
    raw.hset(f"{ns}:job:{spoilt.uuid}", "details", "][")
    assert board.wait(timeout=0) is False  # only garbage: nothing claimable
    assert raw.zscore(f"{ns}:bad", spoilt.uuid) is not None
    assert raw.zcard(f"{ns}:ready") == 0
    assert raw.exists(f"{ns}:job:{spoilt.uuid}") == 1


def test_missing_driver_names_the_extra() -> None:
    code = ("import sys; sys.modules['redis'] = None\n"
            "from legato import errors, jobboard\n"
            "try:\n"
            "    jobboard.connect('redis://127.0.0.1:6379/0')\n"
            "except errors.MissingDriver as exc:\n"
            "    print(exc.extra, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.startswith("redis ") and "legato[redis]" in out


def test_the_proxy_cut_right_after_a_connection_raises_in_no_thread(redis_url: str) -> None:
    """A cut that closes a connection before its forwarding thread starts used to make that
    thread raise (``Bad file descriptor``), failing whichever test cut at that moment."""
    failures: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    try:
        with TCPProxy("127.0.0.1", 6379) as proxy:
            address = urlsplit(proxy.url_for(redis_url))
            assert address.hostname is not None and address.port is not None
            for _ in range(200):
                client = socket.create_connection((address.hostname, address.port))
                proxy.cut()
                proxy.restore()
                client.close()
    finally:
        threading.excepthook = hook
    assert failures == []
