"""The chaos harness leaves no process behind, whatever happens during a run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from legato.testing.chaos import ChaosConfig, Harness, PrivateRedis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Boom(Exception):
    pass


class _FailingHarness(Harness):
    """Fails in the middle of the fault schedule, with every conductor started and one paused."""

    def _schedule(self, *args: object, **kwargs: object) -> None:
        slot = self.slots[0]
        assert slot.proc is not None
        self.pause(slot, 0.01, "pause_short")
        raise _Boom("the schedule failed")


def test_a_failing_run_stops_every_conductor(tmp_path: Path) -> None:
    config = ChaosConfig(board_url=f"sqlite:///{tmp_path / 'board.db'}",
                         persistence_url=f"sqlite:///{tmp_path / 'flows.db'}",
                         conductors=2, batch=2, window=1.0)
    harness = _FailingHarness(config, tmp_path / "run")
    with pytest.raises(_Boom), harness:
        harness.run()
    pids = [slot.proc.pid for slot in harness.slots if slot.proc is not None]
    assert len(pids) == 2
    assert not [pid for pid in pids if _alive(pid)]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_a_private_redis_restarts_on_its_port_and_is_stopped(tmp_path: Path) -> None:
    import redis

    with PrivateRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        server.restart()  # SIGKILL: the append-only file keeps the key
        assert client.get("k") == b"v"
        assert server.proc is not None
        pid = server.proc.pid
        client.close()
    assert not _alive(pid)


def test_unknown_fault_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds: nap"):
        ChaosConfig(board_url="sqlite://", persistence_url="sqlite://", faults=("nap",))


def test_a_private_redis_without_persistence_loses_its_data_on_restart(tmp_path: Path) -> None:
    import redis

    with PrivateRedis(tmp_path, durable=False) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        server.restart()
        assert client.get("k") is None
        client.close()


def test_a_private_redis_with_a_password_keeps_it_off_its_command_line(tmp_path: Path) -> None:
    import redis

    with PrivateRedis(tmp_path, password="S3cretPW") as server:
        assert server.url.startswith("redis://:S3cretPW@")
        assert server.proc is not None
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert b"S3cretPW" not in cmdline
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
