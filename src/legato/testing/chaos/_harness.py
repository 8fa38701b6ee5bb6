"""Conductor processes, the proxies in front of them, private servers, and the faults.

``Harness`` starts N conductor processes (``python -m legato.testing.chaos worker``) on one board
and one persistence, each optionally behind its own ``TCPProxy`` to the board and to persistence,
feeds them the chaos workload, injects faults on a seeded random schedule, drains the board and
checks the invariants. Every process it starts (conductors, private servers) is killed when it
exits, whatever happened; children also get ``PR_SET_PDEATHSIG`` so they die with the harness
(Linux sends it when the thread that started them ends: run a harness from a thread that outlives
the run, e.g. the main thread).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from legato import errors
from legato import jobboard as jb
from legato import persistence as lp
from legato.jobboard.base import Job, JobBoard
from legato.persistence.base import Persistence
from legato.testing.chaos._check import (
    LOST,
    CheckResult,
    JobReport,
    check,
    check_hostile,
    check_secret,
    read_events,
    read_step_runs,
)
from legato.testing.chaos._workload import (
    PostedJob,
    append_line,
    hostile_factories,
    post_raw_factory,
    post_workload,
)
from legato.testing.proxy import TCPProxy

__all__ = ["FAULTS", "ChaosConfig", "Harness", "PrivateRedis", "RunResult", "free_port"]

#: Fault kinds a schedule may draw from.
FAULTS = ("kill", "pause_short", "pause_long", "partition_board", "partition_persistence",
          "server_restart", "server_wipe")

#: Conductors' ``max_attempts`` in the hostile-factory scenario: a job no conductor may run is
#: trashed after a few claims, not 50 (a normal job killed this many times running is trashed
#: too, by the poison-job rule, which the checker allows for).
_HOSTILE_MAX_ATTEMPTS = 3


#: Abandons of the garbage job tolerated before it counts as retried forever.
GARBAGE_RETRIES = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when the harness dies (no orphans).

    ``prctl`` is looked up here, in the parent, so the child only makes the call."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG

    return set_death_signal


def _popen(args: list[str], log: Path, env: dict[str, str] | None = None,
           ) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_death_signal(), env=env)


def _reap(proc: subprocess.Popen[bytes], *, graceful: float = 0.0) -> None:
    """Stop ``proc`` (SIGCONT first, in case it is paused); SIGTERM with ``graceful`` > 0."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)
        if graceful > 0:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(graceful)
                return
        proc.kill()
    proc.wait()


class PrivateRedis:
    """A redis-server of the harness's own on a free loopback port, which it may kill and
    restart. With ``durable`` it writes an append-only file fsynced on every write, so a
    restart keeps every job; without, a restart wipes the data. With ``password`` it requires
    it (``requirepass``, from a config file: never on the server's command line)."""

    def __init__(self, workdir: Path, *, durable: bool = True,
                 password: str | None = None) -> None:
        self.workdir = workdir
        self.durable = durable
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server"]
        if self.password:
            conf = self.workdir / "redis.conf"
            conf.write_text(f"requirepass {self.password}\n")
            conf.chmod(0o600)
            args.append(str(conf))
        args += ["--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.workdir), "--save", "", "--protected-mode", "no"]
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = _popen(args, self.workdir / "redis.log")
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"private redis-server did not start on {self.port}; "
                                       f"see {self.workdir / 'redis.log'}") from None
                time.sleep(0.05)  # polling a port with a bounded deadline

    def kill(self) -> None:
        if self.proc is not None:
            _reap(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


@dataclasses.dataclass
class ChaosConfig:
    """One chaos run.

    Args:
        board_url, persistence_url: where the conductors and the harness connect.
        faults: fault kinds (``FAULTS``) the schedule draws from.
        seed: seeds the workload and the schedule.
        conductors: conductor processes.
        window: seconds during which faults are injected and jobs posted; then the harness
            drains the board (up to ``drain_timeout`` seconds).
        batch: jobs posted at a time whenever fewer than 2 per conductor are waiting.
        in_flight: instead of ``batch``: keep this many jobs on the board (fewer than the
            conductors can run at once, so one is idle to take a job over).
        steps: (min, max) steps per job; durations: (min, max) seconds per step.
        ttl: the conductors' claim TTL.
        kind: ``blocking`` or ``nonblocking`` conductors (``workers`` jobs at once).
        skews: seconds each conductor's board clock is off (missing: 0).
        gap: mean seconds between two faults.
        proxy_board, proxy_persistence: put a ``TCPProxy`` per conductor in front of the board /
            persistence (needed to partition them; networked backends only).
        server: a ``PrivateRedis`` the harness may restart (``server_restart``; a
            non-durable one for ``server_wipe``, which loses its data).
        garbage: before the workload, post a job whose details are nested ~975 deep; with
            ``plant`` (``zookeeper`` or ``redis``) also write a job record with a bad fence
            straight into the board's storage.
        hostile: before the workload, post jobs whose factory records name objects that must
            never be called (``hostile_factories``).
        secret: the board's password: checked to appear in no conductor output or command
            line.
    """

    board_url: str
    persistence_url: str
    faults: tuple[str, ...] = ("kill",)
    seed: int = 0
    conductors: int = 3
    window: float = 20.0
    drain_timeout: float = 90.0
    batch: int = 6
    in_flight: int | None = None
    steps: tuple[int, int] = (3, 5)
    durations: tuple[float, float] = (0.05, 0.5)
    ttl: float = 2.0
    kind: str = "blocking"
    workers: int = 2
    skews: tuple[float, ...] = ()
    gap: float = 2.0
    pause_long: float | None = None
    proxy_board: bool = False
    proxy_persistence: bool = False
    server: PrivateRedis | None = None
    garbage: bool = False
    plant: str | None = None
    hostile: bool = False
    secret: str | None = None
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")


@dataclasses.dataclass
class RunResult:
    """What one run did (faults injected, by kind) and what the checker found."""

    faults: collections.Counter[str]
    check: CheckResult
    elapsed: float
    drained: bool
    workdir: Path

    @property
    def ok(self) -> bool:
        return self.check.ok


@dataclasses.dataclass
class _Slot:
    index: int
    board_proxy: TCPProxy | None
    persistence_proxy: TCPProxy | None
    skew: float
    proc: subprocess.Popen[bytes] | None = None
    started: int = 0


def _proxy_for(url: str) -> TCPProxy:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ValueError(f"cannot put a proxy in front of {parts.scheme}:// without host:port")
    return TCPProxy(parts.hostname, parts.port).__enter__()


class Harness:
    """Run one ``ChaosConfig``: ``with Harness(config, workdir) as h: result = h.run()``."""

    def __init__(self, config: ChaosConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.side_effects = workdir / "side-effects.log"
        self.events = workdir / "events.log"
        self.faults_log = workdir / "faults.log"
        self.rng = random.Random(config.seed)
        self.slots: list[_Slot] = []
        self.jobs: list[PostedJob] = []
        self.faults: collections.Counter[str] = collections.Counter()
        self.notes: list[tuple[str, str]] = []
        self.handles: dict[str, Job] = {}
        self.hostile: list[tuple[str, Path]] = []
        self.refused_at_post: list[str] = []
        self.cmdlines: dict[str, str] = {}
        #: Wipes done while a conductor was connected (which must then log the loss).
        self.wipes_seen = 0
        #: The uuid of the job whose record ``_plant`` corrupted.
        self.planted: str | None = None
        self._stop = threading.Event()

    # -- processes -------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        cfg = self.config
        for index in range(cfg.conductors):
            skew = cfg.skews[index] if index < len(cfg.skews) else 0.0
            self.slots.append(_Slot(
                index,
                _proxy_for(cfg.board_url) if cfg.proxy_board else None,
                _proxy_for(cfg.persistence_url) if cfg.proxy_persistence else None,
                skew))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for slot in self.slots:
            if slot.proc is not None:
                _reap(slot.proc)
            for proxy in (slot.board_proxy, slot.persistence_proxy):
                if proxy is not None:
                    proxy.close()

    def _start(self, slot: _Slot) -> None:
        cfg = self.config
        board = slot.board_proxy.url_for(cfg.board_url) if slot.board_proxy else cfg.board_url
        store = (slot.persistence_proxy.url_for(cfg.persistence_url) if slot.persistence_proxy
                 else cfg.persistence_url)
        slot.started += 1
        # The URLs go through the environment: a password never shows in the command line.
        env = {**os.environ, "LEGATO_BOARD": board, "LEGATO_PERSISTENCE": store}
        args = [sys.executable, "-m", "legato.testing.chaos", "worker",
                "--name", f"c{slot.index}.{slot.started}", "--kind", cfg.kind,
                "--ttl", str(cfg.ttl), "--workers", str(cfg.workers),
                "--events", str(self.events), "--skew", str(slot.skew), *cfg.extra_args]
        if cfg.hostile:  # a job no conductor may run is trashed after a few claims, not 50
            args += ["--max-attempts", str(_HOSTILE_MAX_ATTEMPTS)]
        slot.proc = _popen(args, self.workdir / f"conductor-{slot.index}.log", env)
        self._read_cmdline(slot.proc)

    def _read_cmdline(self, proc: subprocess.Popen[bytes]) -> None:
        """Keep ``/proc/<pid>/cmdline`` of a running conductor (for ``secret_hidden``)."""
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            self.cmdlines[f"the command line of conductor pid {proc.pid}"] = \
                raw.replace(b"\0", b" ").decode(errors="replace")

    def _fault(self, kind: str, slot: _Slot | None, detail: str = "") -> None:
        self.faults[kind] += 1
        pid = slot.proc.pid if slot is not None and slot.proc is not None else "-"
        append_line(self.faults_log, f"{time.time():.6f} {kind} {pid} {detail}".rstrip())

    # -- the faults ------------------------------------------------------------------------

    def _pause_long(self) -> float:
        return self.config.pause_long or self.config.ttl * 2.5

    def kill(self, slot: _Slot) -> None:
        """SIGKILL the conductor, then start a new one in its place."""
        assert slot.proc is not None
        self._fault("kill", slot)
        _reap(slot.proc)
        self._start(slot)

    def pause(self, slot: _Slot, seconds: float, kind: str) -> None:
        """SIGSTOP the conductor for ``seconds`` (a GC or VM pause), then SIGCONT."""
        assert slot.proc is not None
        self._fault(kind, slot, f"{seconds:.2f}s")
        slot.proc.send_signal(signal.SIGSTOP)
        try:
            self._stop.wait(seconds)
        finally:
            slot.proc.send_signal(signal.SIGCONT)

    def partition(self, proxy: TCPProxy, slot: _Slot, seconds: float, kind: str) -> None:
        self._fault(kind, slot, f"{seconds:.2f}s")
        proxy.cut()
        try:
            self._stop.wait(seconds)
        finally:
            proxy.restore()

    def restart_server(self, kind: str = "server_restart") -> None:
        assert self.config.server is not None
        self._fault(kind, None)
        if kind == "server_wipe" and self._ready():
            self.wipes_seen += 1
        self.config.server.restart()

    def _ready(self) -> int:
        """How many conductors have said ``ready`` (are connected to the board)."""
        return sum(1 for log in self.workdir.glob("conductor-*.log")
                   if "ready " in log.read_text(errors="replace"))

    def _inject(self, kind: str) -> None:
        slot = self._target()
        ttl = self.config.ttl
        if kind == "kill":
            self.kill(slot)
        elif kind == "pause_short":
            self.pause(slot, ttl * self.rng.uniform(0.1, 0.5), kind)
        elif kind == "pause_long":
            self.pause(slot, self._pause_long() * self.rng.uniform(1.0, 1.5), kind)
        elif kind == "partition_board" and slot.board_proxy is not None:
            self.partition(slot.board_proxy, slot,
                           self._pause_long() * self.rng.uniform(0.5, 1.5), kind)
        elif kind == "partition_persistence" and slot.persistence_proxy is not None:
            self.partition(slot.persistence_proxy, slot, ttl * self.rng.uniform(0.5, 2.0), kind)
        elif kind in ("server_restart", "server_wipe") and self.config.server is not None:
            self.restart_server(kind)

    def _target(self) -> _Slot:
        """A conductor running a job if there is one (from the event log), else any."""
        running: dict[int, bool] = {}
        for event in read_events(self.events):
            running[event.pid] = event.event == "running_start"
        busy = [s for s in self.slots if s.proc is not None and running.get(s.proc.pid)]
        return self.rng.choice(busy or self.slots)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Post, inject faults for ``window`` seconds, drain, stop the conductors, check."""
        cfg = self.config
        began = time.monotonic()
        persistence = lp.connect(cfg.persistence_url)
        try:
            persistence.upgrade()
            with _board(cfg.board_url, persistence) as board:
                self._post_hostile_data(board, persistence)
                self._feed(board, persistence, cfg.in_flight or cfg.batch)
                for slot in self.slots:
                    self._start(slot)
                self._schedule(board, persistence, began + cfg.window)
                if "server_wipe" in cfg.faults:
                    self._check_survivors()
                drained = self._drain(board, began + cfg.window + cfg.drain_timeout)
                self._stop_all()
                if "server_wipe" in cfg.faults:
                    self._check_loss_logged()
                self._check_planted()
                result = self._check(board, persistence)
        finally:
            self._stop_all()
            persistence.close()
        if not drained:
            result.add("completed_once", "-", f"the board was not drained within "
                       f"{cfg.drain_timeout:.0f}s after the fault window")
        self._check_hostile_data(result)
        for invariant, evidence in self.notes:
            result.add(invariant, "-", evidence)
        self._write_report(result)
        return RunResult(self.faults, result, time.monotonic() - began, drained, self.workdir)

    def _post_garbage(self, board: JobBoard) -> None:
        """Post a job nested as deep as ``post`` takes (975, else 900 or 800 levels): refused
        with a clear one-line error, or stored and then set aside by conductors while every
        other job runs. A raw ``RecursionError`` from ``post`` is a violation."""
        for depth in (975, 900, 800):
            nested: dict[str, Any] = {}
            for _ in range(depth):
                nested = {"x": nested}
            try:
                board.post("garbage", details={"nested": nested})
            except RecursionError:
                if not self.notes:
                    self.notes.append(("garbage_set_aside", f"post of a job nested {depth} "
                                                            "deep raised a raw RecursionError"))
                continue
            except Exception as exc:  # refused with an error of its own: what should happen
                if "\n" in str(exc):
                    self.notes.append(("garbage_set_aside", f"post refused the garbage job "
                                                            f"with a multi-line error: {exc!r}"))
            return

    def _post_hostile_data(self, board: JobBoard, persistence: Persistence) -> None:
        """Garbage records and hostile factories, posted before the workload."""
        cfg = self.config
        if cfg.garbage:
            self._post_garbage(board)
        if cfg.plant:
            self._plant(board, cfg.plant)
        if cfg.hostile:
            self._post_hostile(board, persistence)

    def _check_hostile_data(self, result: CheckResult) -> None:
        """The invariants of garbage records, hostile factories and secret URLs."""
        cfg = self.config
        if cfg.garbage:
            self._check_garbage(result)
        if cfg.hostile:
            check_hostile(result, [name for name, _ in self.hostile], read_events(self.events),
                          self.refused_at_post,
                          [f"{m} exists" for _, m in self.hostile if m.exists()])
        if cfg.secret:
            texts = dict(self.cmdlines)
            for log in sorted(self.workdir.glob("conductor-*.log")):
                texts[log.name] = log.read_text(errors="replace")
            for name in ("events.log", "faults.log"):
                if (self.workdir / name).exists():
                    texts[name] = (self.workdir / name).read_text(errors="replace")
            check_secret(result, cfg.secret, texts)

    def _post_hostile(self, board: JobBoard, persistence: Persistence) -> None:
        """Post jobs whose factory records (written straight through persistence) name objects
        a conductor must never call; their marker files show if one was."""
        for index, (factory, args, marker) in enumerate(hostile_factories(self.workdir)):
            name = f"hostile-{index}"
            self.hostile.append((name, marker))
            try:
                _retrying(functools.partial(post_raw_factory, board, persistence, name,
                                            factory, args))
            except errors.LegatoError:
                self.refused_at_post.append(name)

    def _plant(self, board: JobBoard, kind: str) -> None:
        """Post a job named ``planted``, then give its stored record a fence that is no number
        (``"abc"``), writing with the server's own client as a tool or attacker could."""
        job = board.post("planted", details={})
        self.planted = job.uuid
        if kind == "redis":
            client, namespace = self._redis_client()
            try:
                key = f"{namespace}:job:{job.uuid}"
                if not client.exists(key):
                    self.notes.append(("garbage_set_aside", f"no Redis key {key} to plant"))
                client.hset(key, "fence", json.dumps("abc"))
            finally:
                client.close()
        elif kind == "zookeeper":
            from kazoo.client import KazooClient

            parts = urlsplit(self.config.board_url)
            client = KazooClient(hosts=parts.netloc)
            client.start(timeout=10)
            try:
                jobs = f"{parts.path.rstrip('/')}/jobs"
                nodes = [n for n in client.get_children(jobs) if job.uuid in n]
                if not nodes:
                    self.notes.append(("garbage_set_aside", f"no job node under {jobs} to "
                                                            "plant"))
                for node in nodes:
                    data, _ = client.get(f"{jobs}/{node}")
                    record = json.loads(data)
                    record["fence"] = "abc"
                    client.set(f"{jobs}/{node}", json.dumps(record).encode())
            finally:
                client.stop()
                client.close()

    def _redis_client(self) -> tuple[Any, str]:
        """A redis-py client on the board's server, and the board's key namespace."""
        import redis

        parts = urlsplit(self.config.board_url)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        client = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
                             db=int(parts.path.strip("/") or 0), password=parts.password)
        return client, query.get("namespace", "legato")

    def _check_planted(self) -> None:
        """On Redis: the planted record left the claimable index for the ``bad`` set."""
        if self.config.plant != "redis" or self.planted is None:
            return
        client, namespace = self._redis_client()
        try:
            ready = client.zscore(f"{namespace}:ready", self.planted)
            bad = client.zscore(f"{namespace}:bad", self.planted)
        finally:
            client.close()
        if ready is not None or bad is None:
            where = "still claimable" if ready is not None else "not set aside"
            self.notes.append(("garbage_set_aside", f"the planted job {self.planted} with the "
                               f"fence \"abc\" is {where} after the run"))

    def _check_survivors(self) -> None:
        """``loss_reported``: every conductor outlived the wipes (none exited; checked at the
        end of the fault window)."""
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                self.notes.append(("loss_reported", f"conductor {slot.index} (pid "
                                   f"{slot.proc.pid}) exited with {slot.proc.returncode} "
                                   f"after the board lost its data; see "
                                   f"conductor-{slot.index}.log"))

    def _check_loss_logged(self) -> None:
        """``loss_reported``: if data was lost under connected conductors, at least one logged
        it (checked once they are stopped, so a wipe at the window's end is seen too)."""
        if self.wipes_seen:
            logs = [p.read_text(errors="replace")
                    for p in self.workdir.glob("conductor-*.log")]
            if not any("lost its data" in text for text in logs):
                self.notes.append(("loss_reported", "the board's data was wiped "
                                   f"{self.wipes_seen} times under running conductors and none "
                                   "logged the loss"))

    def _write_report(self, result: CheckResult) -> None:
        """``report.txt`` in the work directory: counts, violations and notices."""
        lines = [f"seed {self.config.seed}", f"faults {dict(self.faults)}",
                 f"jobs {result.jobs} steps run {result.steps_run} re-run {result.steps_rerun}",
                 f"checked {dict(result.checked)}",
                 *(f"VIOLATION {v}" for v in result.violations),
                 *(f"notice {n}" for n in result.notices)]
        (self.workdir / "report.txt").write_text("\n".join(lines) + "\n")

    def _check_garbage(self, result: CheckResult) -> None:
        """The garbage job (and the planted record), if stored, is set aside (trashed or left
        alone), not retried: at most ``GARBAGE_RETRIES`` abandons."""
        result.checked["garbage_set_aside"] += 1
        abandons = [e for e in read_events(self.events)
                    if e.job in ("garbage", "planted") and e.event == "job_abandoned"]
        if len(abandons) > GARBAGE_RETRIES:
            result.add("garbage_set_aside", "garbage",
                       f"abandoned {len(abandons)} times, last: {abandons[-1].reason}")

    def _feed(self, board: JobBoard, persistence: Persistence, count: int) -> None:
        cfg = self.config
        for _ in range(count):
            self.jobs += _retrying(functools.partial(
                post_workload, board, persistence, jobs=1, steps=cfg.steps,
                durations=cfg.durations, rng=self.rng, log_path=self.side_effects,
                prefix=f"job{len(self.jobs):04d}", handles=self.handles))

    def _schedule(self, board: JobBoard, persistence: Persistence, until: float) -> None:
        cfg = self.config
        if "server_wipe" in cfg.faults:
            # A wipe matters once conductors hold the board's epoch: wait for them (bounded).
            deadline = time.monotonic() + 20
            while self._ready() < len(self.slots) and time.monotonic() < deadline:
                if self._stop.wait(0.2):
                    return
            # At least one wipe: the first pause is at most 1.7 gaps.
            until = max(until, time.monotonic() + 1.8 * cfg.gap)
        while time.monotonic() < until and cfg.faults:
            # Pacing of the schedule (faults at random moments), not a synchronisation.
            if self._stop.wait(cfg.gap * self.rng.uniform(0.3, 1.7)):
                return
            if time.monotonic() >= until:
                break
            kind = self.rng.choice(cfg.faults)
            if kind == "server_wipe":
                # Jobs waiting and running when the data goes: the losses to be reported.
                self._feed(board, persistence, cfg.batch)
            self._inject(kind)
            if cfg.in_flight is not None:
                missing = cfg.in_flight - int(_retrying(lambda: board.job_count))
                if missing > 0:
                    self._feed(board, persistence, missing)
                continue
            waiting = _retrying(lambda: sum(1 for j in board.iterjobs(only_unclaimed=True)))
            if waiting < 2 * cfg.conductors:
                self._feed(board, persistence, cfg.batch)

    def _drain(self, board: JobBoard, until: float) -> bool:
        """Let every conductor run undisturbed until no posted job is left on the board."""
        for slot in self.slots:
            if slot.proc is None or slot.proc.poll() is not None:
                self._start(slot)
        wanted = {job.uuid for job in self.jobs}
        while time.monotonic() < until:
            try:
                left = {job.uuid for job in board.iterjobs()} & wanted
            except Exception:  # a restarting server, or a record the board cannot read
                left = wanted
            if not left:
                return True
            try:
                board.wait(0.5)
            except Exception:  # the server is restarting: poll again shortly
                self._stop.wait(0.5)
        return False

    def _stop_all(self) -> None:
        for slot in self.slots:
            if slot.proc is not None:
                if slot.proc.poll() is None:
                    self._read_cmdline(slot.proc)
                _reap(slot.proc, graceful=10.0)

    def _check(self, board: JobBoard, persistence: Persistence) -> CheckResult:
        on_board: set[str] = set()
        trashed: set[str] = set()
        with contextlib.suppress(Exception):
            on_board = {job.uuid for job in board.iterjobs()}
        with contextlib.suppress(Exception):
            trashed = {job.uuid for job in board.iter_trash()}
        reports = []
        for job in self.jobs:
            flow = persistence.get_flow_details(job.flow_uuid)
            recorded = {}
            for atom in flow.atoms.values():
                if atom.name.startswith("step-") and atom.state == "SUCCESS":
                    recorded[int(atom.name.split("-", 1)[1])] = atom.results
            reports.append(JobReport(job.name, job.steps,
                                     None if flow.state is None else str(flow.state),
                                     recorded, job.uuid in on_board, job.uuid in trashed,
                                     self._producer_view(board, job)))
        (self.workdir / "jobs.json").write_text(json.dumps(
            [dataclasses.asdict(job) for job in self.jobs], indent=1))
        return check(reports, read_step_runs(self.side_effects), read_events(self.events),
                     max_attempts=_HOSTILE_MAX_ATTEMPTS if self.config.hostile else None)


    def _producer_view(self, board: JobBoard, job: PostedJob) -> str | None:
        """After a wipe: what the producer's ``Job.state`` says (``LOST``: ``BoardDataLost``);
        a job it calls COMPLETE must also ``wait()`` True."""
        handle = self.handles.get(job.uuid)
        if "server_wipe" not in self.config.faults or handle is None:
            return None
        try:
            state = _retrying(lambda: _lost_or_state(handle))
        except Exception as exc:
            return f"error {type(exc).__name__}"
        if state == "COMPLETE" and not handle.wait(0):
            return "COMPLETE but wait() False"
        return str(state)


def _lost_or_state(job: Job) -> str:
    try:
        return job.state.name
    except errors.BoardDataLost:
        return LOST


@contextlib.contextmanager
def _board(url: str, persistence: Persistence) -> Iterator[JobBoard]:
    with jb.connect(url, persistence=persistence) as board:
        yield board


def _retrying(call: Callable[[], Any], attempts: int = 40) -> Any:
    """``call()``, retried while a restarting server refuses it (bounded)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)  # back-off between attempts against a restarting server
    return None

