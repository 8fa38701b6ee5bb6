"""Named chaos scenarios, one per fault the issue of partitions, pauses and skew names, and
the runner that builds each on a board (URLs from ``legato.testing.services``, so every run gets
an isolated namespace on the shared servers, or a private server where the run breaks it)."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

from legato.testing import services
from legato.testing.chaos._harness import ChaosConfig, Harness, PrivateRedis, RunResult

__all__ = ["BOARDS", "SCENARIOS", "Scenario", "applicable", "run_scenario"]

#: Boards the suite runs on.
BOARDS = ("sqlite", "postgres", "redis", "zookeeper")
#: Boards reached over TCP, which a proxy can cut.
NETWORKED = ("postgres", "redis", "zookeeper")
#: The ZooKeeper session timeout used by chaos runs (long pauses and partitions outlast it).
ZK_SESSION_TIMEOUT = 4.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named fault schedule and the workload it runs; ``boards`` it applies to."""

    name: str
    summary: str
    faults: tuple[str, ...]
    boards: tuple[str, ...] = BOARDS
    kind: str = "blocking"
    steps: tuple[int, int] = (3, 5)
    durations: tuple[float, float] = (0.05, 0.5)
    persistence: str = "sqlite"
    private_redis: bool = False
    skews: tuple[float, ...] = ()
    garbage: bool = False
    gap: float = 2.0
    #: The claim TTL on ZooKeeper when it must outlast the session (None: the run's TTL).
    zk_ttl: float | None = None
    #: Jobs kept on the board instead of a backlog (so a conductor is idle to take over).
    in_flight: int | None = None
    #: Post jobs whose factory records name objects that must never be called.
    hostile: bool = False
    #: The private redis-server requires this password (the board URL carries it).
    password: str | None = None

    def faults_on(self, board: str) -> tuple[str, ...]:
        """The fault kinds that can be injected on ``board``."""
        faults = []
        for fault in self.faults:
            if fault == "partition_board" and board not in NETWORKED:
                continue
            if fault == "partition_persistence" and self.persistence == "sqlite":
                continue
            if fault in ("server_restart", "server_wipe") and not (
                    board == "redis" and self.private_redis):
                continue
            faults.append(fault)
        return tuple(faults)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("kill", "SIGKILL a conductor running a job, start another", ("kill",)),
    Scenario("pause_shorter_than_ttl", "SIGSTOP a conductor for 10-50% of the TTL",
             ("pause_short",)),
    Scenario("pause_longer_than_ttl", "SIGSTOP a conductor past its TTL (and past the "
             "ZooKeeper session): a GC or VM pause", ("pause_long",)),
    Scenario("partition_board", "cut one conductor from the board past its TTL (on "
             "ZooKeeper: a TTL twice the session timeout, and a cut past both)",
             ("partition_board",), boards=NETWORKED, zk_ttl=2 * ZK_SESSION_TIMEOUT,
             steps=(6, 10), durations=(0.5, 1.5), in_flight=2),
    Scenario("partition_persistence", "cut one conductor from persistence (PostgreSQL) for "
             "0.5-2 TTL", ("partition_persistence",), persistence="postgres"),
    Scenario("stale_writer", "long steps; the conductor running one is cut from the board "
             "(or paused) past its TTL, and another takes the job over",
             ("partition_board", "pause_long"), durations=(2.0, 5.0), steps=(2, 3), in_flight=2,
             persistence="postgres"),
    Scenario("nonblocking_partition", "nonblocking conductors cut from the board while long "
             "steps run", ("partition_board",), boards=NETWORKED, kind="nonblocking",
             durations=(3.0, 6.0), steps=(1, 2), in_flight=3),
    Scenario("redis_restart", "kill and restart a private redis-server (append-only file, "
             "fsync always) under the conductors", ("server_restart", "kill"),
             boards=("redis",), private_redis=True),
    Scenario("clock_skew", "one conductor's board clock 40 s ahead, another's 40 s behind",
             ("kill", "pause_short"), boards=("zookeeper",), skews=(40.0, -40.0)),
    Scenario("garbage_record", "a job nested 975 deep posted before the workload (on "
             "ZooKeeper and Redis also a job record with the fence \"abc\" written around the "
             "API); the other jobs must all run", ("kill",), garbage=True),
    Scenario("redis_wipe", "restart a private redis-server that persists nothing: jobs are "
             "lost, and must be reported lost (BoardDataLost), never COMPLETE",
             ("server_wipe",), boards=("redis",), private_redis=True, gap=3.0),
    Scenario("hostile_factory", "jobs whose factory records (written through persistence) "
             "walk into os.system / subprocess.run or name unregistered functions under the "
             "allowed prefix; nothing is called, they are trashed, the rest run",
             ("kill",), hostile=True),
    Scenario("secret_url", "a private redis-server with a password in the board URL: it shows "
             "in no conductor output or command line", ("kill",), boards=("redis",),
             private_redis=True, password="S3cretPW"),
    Scenario("mixed", "every fault that applies to the board, at random",
             ("kill", "pause_short", "pause_long", "partition_board", "partition_persistence",
              "server_restart"), persistence="postgres", private_redis=True, gap=1.5),
)}


def applicable(scenario: Scenario, board: str) -> bool:
    return board in scenario.boards and bool(scenario.faults_on(board) or scenario.skews)


@contextlib.contextmanager
def _board_url(board: str, scenario: Scenario, workdir: Path,
               ) -> Iterator[tuple[str, PrivateRedis | None]]:
    if board == "sqlite":
        yield f"sqlite:///{workdir / 'board.db'}", None
    elif board == "postgres":
        with services.postgres_url() as url:
            yield url, None
    elif board == "redis" and scenario.private_redis:
        durable = "server_wipe" not in scenario.faults
        with PrivateRedis(workdir, durable=durable, password=scenario.password) as server:
            yield server.url, server
    elif board == "redis":
        with services.redis_url() as url:
            yield url, None
    elif board == "zookeeper":
        with services.zookeeper_url() as url:
            yield f"{url}?session_timeout={ZK_SESSION_TIMEOUT:g}", None
    else:
        raise ValueError(f"unknown board {board!r}; boards: {', '.join(BOARDS)}")


@contextlib.contextmanager
def _persistence_url(scenario: Scenario, workdir: Path) -> Iterator[str]:
    if scenario.persistence == "postgres":
        with services.postgres_url() as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'flows.db'}"


def run_scenario(scenario: Scenario | str, board: str, *, seed: int, window: float = 20.0,
                 conductors: int = 3, batch: int = 6, ttl: float = 2.0,
                 workdir: Path | None = None) -> RunResult:
    """Run ``scenario`` on ``board`` once.

    Raises:
        ValueError: the scenario does not apply to the board.
        ServiceUnavailable: the board's or persistence's server cannot be reached.
    """
    if isinstance(scenario, str):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; scenarios: "
                             f"{', '.join(SCENARIOS)}")
        scenario = SCENARIOS[scenario]
    if not applicable(scenario, board):
        raise ValueError(f"scenario {scenario.name} does not apply to the {board} board")
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix=f"legato-chaos-{scenario.name}-{board}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    faults = scenario.faults_on(board)
    if board == "zookeeper" and scenario.zk_ttl is not None:
        ttl = scenario.zk_ttl
    pause_long = max(ttl, ZK_SESSION_TIMEOUT if board == "zookeeper" else 0.0) * 1.5
    with _board_url(board, scenario, workdir) as (board_url, server), \
            _persistence_url(scenario, workdir) as persistence_url:
        config = ChaosConfig(
            board_url=board_url, persistence_url=persistence_url, faults=faults, seed=seed,
            conductors=conductors, window=window, batch=batch, in_flight=scenario.in_flight,
            steps=scenario.steps,
            durations=scenario.durations, ttl=ttl, kind=scenario.kind, skews=scenario.skews,
            gap=scenario.gap, pause_long=pause_long,
            proxy_board="partition_board" in faults,
            proxy_persistence="partition_persistence" in faults,
            server=server, garbage=scenario.garbage,
            plant=board if scenario.garbage and board in ("redis", "zookeeper") else None,
            hostile=scenario.hostile, secret=scenario.password)
        with Harness(config, workdir) as harness:
            return harness.run()
