"""Helpers for testing conductors: flow factories, posting a job, recording events.

The factories are registered (``@flow_factory``) and importable by name, so conductor processes
started by tests can rebuild them. ``gate`` lets a test hold a running flow at a known step.
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from legato import engine as engine_mod
from legato import errors
from legato.flow import Flow, LinearFlow, Task, flow_factory
from legato.jobboard.base import Job, JobBoard
from legato.notifier import ANY
from legato.persistence.base import Persistence
from legato.persistence.models import FlowDetail, LogBook
from legato.states import JobPriority

__all__ = [
    "EventRecorder",
    "add_flow",
    "failing_flow",
    "gate",
    "gated_flow",
    "next_line",
    "poison_flow",
    "post_job",
    "recorded",
    "side_effect_flow",
    "steps_flow",
    "takeover_flow",
    "wait_until",
]

_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()
_arrivals: dict[tuple[str, int], int] = {}


def gate(name: str) -> threading.Event:
    """The process-wide event called ``name`` (created on first use); ``gated_flow`` waits on
    it."""
    with _gates_lock:
        return _gates.setdefault(name, threading.Event())


class _Step(Task):
    def __init__(self, index: int) -> None:
        super().__init__(f"step-{index}", provides=f"step-{index}")
        self.index = index

    def execute(self) -> int:
        return self.index


class _Add(Task):
    def execute(self, x: int, y: int) -> int:
        return x + y


class _Fail(Task):
    def execute(self) -> None:
        raise ValueError("this task always fails")


class _Poison(Task):
    def execute(self) -> None:
        raise errors.ExecutionFailure("this flow can never run here")


class _Gated(Task):
    def __init__(self, index: int, gate_name: str, at: int) -> None:
        super().__init__(f"gated-{index}", provides=f"gated-{index}")
        self.index, self.gate_name, self.at = index, gate_name, at

    def execute(self) -> int:
        if self.index == self.at:
            gate(f"{self.gate_name}:reached").set()
            if not gate(self.gate_name).wait(60):
                raise TimeoutError(f"gate {self.gate_name!r} never opened")
        return self.index


class _SideEffect(Task):
    def __init__(self, index: int, label: str, log_path: str, pause: float) -> None:
        super().__init__(f"step-{index}", provides=f"step-{index}")
        self.index, self.label, self.log_path, self.pause = index, label, log_path, pause

    def _log(self, what: str, run: str) -> None:
        line = f"{what} {self.label} {self.index} {os.getpid()} {run}\n".encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines never interleave
        finally:
            os.close(fd)

    def execute(self) -> str:
        run = uuid.uuid4().hex[:12]  # tells this run of the step from any other
        self._log("start", run)
        if self.pause:
            time.sleep(self.pause)  # stands for real work, so kills land mid-step
        self._log("end", run)
        return run


class _Takeover(Task):
    def __init__(self, index: int, gate_name: str, at: int, log_path: str) -> None:
        super().__init__(f"step-{index}", provides=f"step-{index}")
        self.index, self.gate_name, self.at, self.log_path = index, gate_name, at, log_path

    def _log(self, line: str) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)

    def execute(self) -> str:
        with _gates_lock:
            key = (self.gate_name, self.index)
            arrival = _arrivals[key] = _arrivals.get(key, 0) + 1
        self._log(f"execute {self.index} {arrival}")
        if self.index == self.at and arrival == 1:
            gate(f"{self.gate_name}:reached").set()
            if not gate(self.gate_name).wait(60):
                raise TimeoutError(f"gate {self.gate_name!r} never opened")
            if gate(f"{self.gate_name}:fail").is_set():
                raise RuntimeError(f"step {self.index} failed after its gate opened")
        return f"{self.index}:{arrival}"

    def revert(self, **kwargs: Any) -> None:
        self._log(f"revert {self.index}")


@flow_factory
def takeover_flow(steps: int, gate_name: str, at: int, log_path: str) -> Flow:
    """``steps`` tasks returning ``"<step>:<arrival>"`` (the n-th run of that step in this
    process) and appending ``execute <step> <arrival>`` and ``revert <step>`` lines to
    ``log_path``. The first run of step ``at`` sets gate ``<gate_name>:reached`` and waits for
    ``gate(gate_name)``, then fails if ``gate(<gate_name>:fail)`` is set; later runs of it (a
    conductor that took the job over) go straight through."""
    return LinearFlow("takeover").add(
        *(_Takeover(i, gate_name, at, log_path) for i in range(steps)))


@flow_factory
def steps_flow(steps: int = 1) -> Flow:
    """``steps`` tasks in a row, ``step-<i>`` providing ``i``."""
    return LinearFlow("steps").add(*(_Step(i) for i in range(steps)))


@flow_factory
def add_flow() -> Flow:
    """One task adding the stored ``x`` and ``y`` into ``total``."""
    return LinearFlow("add").add(_Add("add", provides="total"))


@flow_factory
def failing_flow() -> Flow:
    """A good step then a failing one: the flow ends REVERTED."""
    return LinearFlow("failing").add(_Step(0), _Fail("fail"))


@flow_factory
def poison_flow() -> Flow:
    """A flow whose task raises ``ExecutionFailure`` every time."""
    return LinearFlow("poison").add(_Poison("poison"))


@flow_factory
def gated_flow(steps: int, gate_name: str, at: int = 0) -> Flow:
    """``steps`` tasks; task ``at`` sets gate ``<gate_name>:reached`` and waits for
    ``gate(gate_name)``."""
    return LinearFlow("gated").add(*(_Gated(i, gate_name, at) for i in range(steps)))


@flow_factory
def side_effect_flow(steps: int, label: str, log_path: str, pause: float = 0.0) -> Flow:
    """``steps`` tasks each appending ``start``/``end`` lines
    (``<what> <label> <step> <pid> <run>``) to ``log_path``, sleeping ``pause`` seconds between
    them; each step's result is its ``run`` token."""
    return LinearFlow("side-effects").add(
        *(_SideEffect(i, label, log_path, pause) for i in range(steps)))


def post_job(board: JobBoard, persistence: Persistence, factory: Any, *,
             args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
             store: dict[str, Any] | None = None, meta_store: dict[str, Any] | None = None,
             name: str = "job", priority: JobPriority = JobPriority.NORMAL,
             details: dict[str, Any] | None = None) -> Job:
    """Post a job for a new logbook with one flow detail rebuilt by ``factory``, saved with
    the post (``JobBoard.post(save_book_in=persistence)``: one write with the job's when they
    share a database; the book's meta names the job).

    ``store`` goes in the job's details, ``meta_store`` in the flow detail's meta; ``details``
    adds other job details.
    """
    book = LogBook(name)
    flow_detail = FlowDetail(name)
    if meta_store is not None:
        flow_detail.meta["store"] = dict(meta_store)
    book.add(flow_detail)
    engine_mod.record_factory(flow_detail, factory, args, kwargs)
    job_details = dict(details or {})
    if store is not None:
        job_details["store"] = dict(store)
    return board.post(name, book=book, details=job_details, priority=priority,
                      save_book_in=persistence)


class EventRecorder:
    """A notifier listener keeping ``(event, details)`` pairs; register it for ``ANY``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition(self._lock)

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((event, dict(details, at=time.monotonic())))
            self.changed.notify_all()

    def names(self, job: Job | None = None) -> list[str]:
        """Event names in order, for one job or all."""
        with self._lock:
            return [e for e, d in self.events if job is None or _job_of(d) == job.uuid]

    def of(self, event: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d for e, d in self.events if e == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = 30.0) -> bool:
        """Block until ``event`` was recorded ``count`` times; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(1 for e, _ in self.events if e == event) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
            return True


def recorded(conductor: Any) -> EventRecorder:
    """An ``EventRecorder`` registered for every event of ``conductor``'s notifier."""
    recorder = EventRecorder()
    conductor.notifier.register(ANY, recorder)
    return recorder


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


#: The line queue of each stream, kept while the stream lives (keyed by the object, not its
#: ``id``: a later stream may get a collected one's id, and must not get its ended queue).
_readers: weakref.WeakKeyDictionary[Any, queue.Queue[str | None]] = weakref.WeakKeyDictionary()


def next_line(stream: Any, wanted: Callable[[str], bool], timeout: float, failure: str) -> str:
    """The next line of ``stream`` (a child process's text pipe) for which ``wanted`` holds;
    ``AssertionError(failure)`` after ``timeout`` seconds or at the end of the stream. A thread
    per stream reads its lines: ``select`` on a buffered pipe misses lines already read into
    its buffer."""
    lines = _readers.get(stream)
    if lines is None:
        lines = _readers[stream] = queue.Queue()

        def pump(sink: queue.Queue[str | None] = lines) -> None:
            for line in stream:
                sink.put(line)
            sink.put(None)

        threading.Thread(target=pump, daemon=True, name="legato-line-reader").start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        if wanted(line):
            return line
    raise AssertionError(failure)


def _job_of(details: dict[str, Any]) -> str | None:
    job = details.get("job")
    return getattr(job, "uuid", None)


def _attach_timing(_event: str, details: dict[str, Any]) -> None:
    from legato.engine.listeners import TimingListener

    engine = details.get("engine")
    if engine is not None:
        TimingListener(engine).register()


def serve(argv: list[str] | None = None) -> None:
    """Run one conductor until killed: ``python -m legato.testing.conductor BOARD PERSISTENCE``.

    Used by end-to-end tests and benchmarks that start, kill and restart conductor processes.
    Without the URLs it reads ``LEGATO_BOARD`` and ``LEGATO_PERSISTENCE``: a URL holding a
    password belongs in the environment, not on a command line every user can read (``ps``).
    """
    from legato import jobboard as jb
    from legato import persistence as lp
    from legato.conductor import fetch

    parser = argparse.ArgumentParser(prog="python -m legato.testing.conductor")
    parser.add_argument("board", nargs="?", default=os.environ.get("LEGATO_BOARD"))
    parser.add_argument("persistence", nargs="?", default=os.environ.get("LEGATO_PERSISTENCE"))
    parser.add_argument("--name", default="worker")
    parser.add_argument("--kind", default="blocking")
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--jobs", type=int, default=1, help="max simultaneous jobs")
    parser.add_argument("--max-attempts", type=int, default=20)
    parser.add_argument("--max-dispatches", type=int, default=None)
    parser.add_argument("--claim-ahead-below", type=float, default=None,
                        help="blocking conductor: claim ahead after jobs shorter than this")
    parser.add_argument("--timing", action="store_true",
                        help="record each atom's duration in its meta, as legato conductor does")
    args = parser.parse_args(argv)
    if not args.board or not args.persistence:
        parser.error("give BOARD and PERSISTENCE, or set LEGATO_BOARD and LEGATO_PERSISTENCE")
    persistence = lp.connect(args.persistence)
    options: dict[str, Any] = {"claim_ttl": args.ttl, "max_attempts": args.max_attempts,
                               "allowed_factories": ["legato.testing"], "wait_timeout": 0.5,
                               "backoff_base": 0.1, "backoff_max": 1.0}
    if args.kind == "nonblocking":
        options["max_simultaneous_jobs"] = args.jobs
    elif args.claim_ahead_below is not None:
        options["claim_ahead_below"] = args.claim_ahead_below
    with jb.connect(args.board, persistence=persistence) as board:
        conductor = fetch(args.kind, args.name, board, persistence=persistence, **options)
        if args.timing:
            conductor.notifier.register("running_start", _attach_timing)
        print(f"ready {conductor.conductor.name}", flush=True)
        conductor.run(max_dispatches=args.max_dispatches)


if __name__ == "__main__":
    serve()
