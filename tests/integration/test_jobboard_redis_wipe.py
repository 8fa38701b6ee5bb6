"""A Redis that loses its data (restarted without persistence): boards say so, loudly.

Every test here runs its own ``redis-server`` (``services.private_redis``) and restarts it; the
shared test Redis is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato import errors
from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.jobboard.base import JobBoard
from legato.jobboard.redis import RedisJobBoard
from legato.notifier import ANY
from legato.persistence.base import Persistence
from legato.testing import conductor as tc
from legato.testing import services
from legato.testing.jobboard import MakeBoard
from legato.testing.jobboard_acceptance import until

LEGATO = [sys.executable, "-m", "legato.cli"]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[services.PrivateRedis]:
    """A private ``redis-server``; ``@pytest.mark.parametrize("server", [(args...)],
    indirect=True)`` passes it more options."""
    args: tuple[str, ...] = getattr(request, "param", ())
    try:
        cm = services.private_redis(*args)
        running = cm.__enter__()
    except services.ServiceUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"required service unavailable under CI=true: {exc}")
        pytest.skip(f"service unavailable: {exc}")
    try:
        yield running
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture
def make_board(server: services.PrivateRedis) -> Iterator[MakeBoard]:
    boards: list[JobBoard] = []

    def make(**options: Any) -> JobBoard:
        board = jb.connect(f"{server.url}?namespace=wipe", **options)
        board.connect()
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.close()


def test_a_job_lost_with_the_data_is_not_complete(server: services.PrivateRedis,
                                                  make_board: MakeBoard) -> None:
    producer = make_board()
    jobs = [producer.post(f"job-{i}") for i in range(5)]
    done = producer.post("done")
    claimed = producer.claim(done, "c")
    producer.consume(claimed, "c")
    assert done.state.name == "COMPLETE" and done.wait(timeout=0)
    server.restart()
    with pytest.raises(errors.BoardDataLost, match="lost its data"):
        _ = jobs[0].state
    # The board carries on, and keeps telling the lost jobs apart from finished ones.
    for job in jobs:
        with pytest.raises(errors.BoardDataLost, match=job.uuid):
            _ = job.state
        with pytest.raises(errors.BoardDataLost):
            job.wait(timeout=0.2)
    later = producer.post("later")
    assert later.state.name == "UNCLAIMED"


def test_claim_next_wait_and_consume_raise_data_lost(server: services.PrivateRedis,
                                                     make_board: MakeBoard) -> None:
    producer, claimer, waiter, owner = (make_board() for _ in range(4))
    for i in range(5):
        producer.post(f"job-{i}")
    held = owner.claim_next("owner")
    assert held is not None
    server.restart()
    with pytest.raises(errors.BoardDataLost, match="lost its data"):
        claimer.claim_next("c")
    with pytest.raises(errors.BoardDataLost, match="lost its data"):
        waiter.wait(timeout=0.2)
    with pytest.raises(errors.BoardDataLost, match="lost its data"):
        owner.consume(held, "owner")
    # Each board reported the loss once and works on the (empty) board again.
    assert claimer.claim_next("c") is None
    assert waiter.wait(timeout=0.05) is False
    with pytest.raises(errors.BoardDataLost):  # the producer's first call after the loss
        producer.post("after")
    posted = producer.post("after")
    again = claimer.claim_next("c")
    assert again is not None and again.uuid == posted.uuid


def test_producer_post_after_a_wipe_reports_the_loss(server: services.PrivateRedis,
                                                     make_board: MakeBoard) -> None:
    producer = make_board()
    producer.post("before")
    server.restart()
    with pytest.raises(errors.BoardDataLost):
        producer.post("after")
    job = producer.post("after")
    assert [j.uuid for j in producer.iterjobs()] == [job.uuid]


def test_a_conductor_after_a_wipe_logs_the_loss_and_reports_no_success(
        server: services.PrivateRedis, make_board: MakeBoard,
        caplog: pytest.LogCaptureFixture) -> None:
    persistence = lp.connect("memory://")
    persistence.upgrade()
    producer, board = make_board(persistence=persistence), make_board(persistence=persistence)
    gate = f"wipe-{uuid.uuid4().hex}"
    running = tc.post_job(producer, persistence, tc.gated_flow,
                          kwargs={"steps": 2, "gate_name": gate, "at": 1})
    waiting = [tc.post_job(producer, persistence, tc.steps_flow) for _ in range(4)]
    conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05)
    events = tc.EventRecorder()
    conductor.notifier.register(ANY, events)
    thread = threading.Thread(target=conductor.run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="legato"):
        thread.start()
        try:
            assert tc.gate(f"{gate}:reached").wait(30)
            server.restart()
            tc.gate(gate).set()
            assert events.wait_for("job_abandoned", timeout=30)
            assert until(lambda: conductor.statistics.get("board_errors", 0) >= 1, 30)
        finally:
            conductor.stop()
            thread.join(30)
    assert not thread.is_alive()
    assert events.of("job_consumed") == []
    (abandoned,) = events.of("job_abandoned")
    assert abandoned["job"] == running and abandoned["reason"].startswith("board data lost")
    assert conductor.statistics.get("consumed", 0) == 0
    lost = [r for r in caplog.records if r.levelno >= logging.ERROR
            and "lost its data" in r.getMessage()]
    assert lost, caplog.text
    for job in [running, *waiting]:
        with pytest.raises(errors.BoardDataLost):
            job.wait(timeout=0.1)
    _check_persistence_untouched(persistence)


def _check_persistence_untouched(persistence: Persistence) -> None:
    assert len(list(persistence.get_logbooks())) == 5


# -- servers that persist nothing ----------------------------------------------------------

def test_connect_warns_when_the_server_persists_nothing(
        server: services.PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="legato.jobboard.redis"), \
            jb.connect(f"{server.url}?namespace=warn") as board:
        board.post("still works")
    warned = [r for r in caplog.records if "persists nothing" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert f"127.0.0.1:{server.port}" in warned[0].getMessage()


def test_require_persistence_refuses_a_server_that_persists_nothing(
        server: services.PrivateRedis) -> None:
    board = jb.connect(f"{server.url}?namespace=strict&require_persistence=true")
    assert isinstance(board, RedisJobBoard) and board.settings.require_persistence
    with pytest.raises(errors.JobFailure, match=r"persists nothing.*require_persistence"):
        board.connect()
    assert not board.connected
    keyword = jb.connect(f"{server.url}?namespace=strict", require_persistence=True)
    with pytest.raises(errors.JobFailure, match="persists nothing"):
        keyword.connect()


def test_require_persistence_accepts_a_server_that_saves(
        server: services.PrivateRedis) -> None:
    import redis

    client = redis.Redis(port=server.port)
    try:
        client.config_set("appendonly", "yes")
        with jb.connect(f"{server.url}?namespace=strict&require_persistence=true") as board:
            board.post("kept")
    finally:
        client.close()


@pytest.mark.parametrize("server", [("--rename-command", "CONFIG", "")], indirect=True)
def test_no_config_command_skips_the_check_quietly(
        server: services.PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="legato.jobboard.redis"), \
            jb.connect(f"{server.url}?namespace=managed&require_persistence=true") as board:
        board.post("works")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "cannot check the server's persistence" in caplog.text


def test_cli_jobs_list_refusing_a_server_prints_one_error_line(
        server: services.PrivateRedis) -> None:
    url = f"{server.url}?namespace=cli&require_persistence=true"
    out = subprocess.run([*LEGATO, "jobs", "list", "--board", url], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "persists nothing" in lines[0] and "Traceback" not in out.stderr


def _line(stream: Any, wanted: str, timeout: float = 30) -> str:
    return tc.next_line(stream, lambda line: wanted in line, timeout,
                        f"no line with {wanted!r} within {timeout}s")


def test_cli_conductor_logs_the_loss_as_an_error_and_carries_on(
        server: services.PrivateRedis, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(LEGATO_BOARD=f"{server.url}?namespace=cli",
               LEGATO_PERSISTENCE=f"sqlite:///{tmp_path / 'flows.db'}")
    with subprocess.Popen([*LEGATO, "--json", "conductor", "--name", "worker", "--allow",
                           "legato.demo"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert json.loads(_line(proc.stdout, '"started"'))["event"] == "started"
            server.restart()
            lost = _line(proc.stderr, "lost its data")
            assert lost.startswith("ERROR") and "Traceback" not in lost
            assert proc.poll() is None  # carries on, with back-off
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
