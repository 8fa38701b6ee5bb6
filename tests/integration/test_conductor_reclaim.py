"""A nonblocking conductor cut from a Redis board (a TCP proxy between them) while a step runs:
its claim lapses and, once the board is back, the same conductor gets the job again. It must not
start a second run of a job it is still running, nor lose the lease of a newer claim when the
old run ends; no step runs after the job was consumed and every step that succeeded ran once."""

from __future__ import annotations

import threading
import uuid
from urllib.parse import urlsplit

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import NonBlockingConductor
from legato.flow import Flow, LinearFlow, Task, flow_factory
from legato.jobboard.base import Job, JobBoard
from legato.notifier import ANY
from legato.states import FlowState
from legato.testing import conductor as tc
from legato.testing.conductor import wait_until
from legato.testing.proxy import TCPProxy

#: Side-effect logs of ``reclaim_flow``: label -> [(what, step, run)], "consumed" included.
LOGS: dict[str, list[tuple[str, int, str]]] = {}
_lock = threading.Lock()


def _log(label: str, what: str, step: int, run: str) -> None:
    with _lock:
        LOGS.setdefault(label, []).append((what, step, run))


class _Step(Task):
    def __init__(self, index: int, label: str, at: int) -> None:
        super().__init__(f"step-{index}", provides=f"step-{index}")
        self.index, self.label, self.at = index, label, at

    def execute(self) -> str:
        run = uuid.uuid4().hex[:8]
        _log(self.label, "start", self.index, run)
        if self.index == self.at:
            tc.gate(f"{self.label}:reached").set()
            if not tc.gate(self.label).wait(60):
                raise TimeoutError(f"gate {self.label!r} never opened")
        _log(self.label, "end", self.index, run)
        return run


@flow_factory
def reclaim_flow(steps: int, label: str, at: int) -> Flow:
    """``steps`` tasks logging start and end in ``LOGS[label]``; task ``at`` sets gate
    ``<label>:reached`` and waits for gate ``label``."""
    return LinearFlow("reclaim").add(*(_Step(i, label, at) for i in range(steps)))


def fence_of(board: JobBoard, job: Job) -> int:
    return board.get(job.uuid).record.fence


def test_nonblocking_conductor_never_runs_a_job_twice_after_a_cut(redis_url: str) -> None:
    label = f"reclaim-{uuid.uuid4().hex}"
    persistence = lp.connect("memory://")
    parts = urlsplit(redis_url)
    with TCPProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy, \
            jb.connect(proxy.url_for(redis_url), persistence=persistence) as board, \
            jb.connect(redis_url, persistence=persistence) as direct:
        job = tc.post_job(direct, persistence, reclaim_flow,
                          kwargs={"steps": 4, "label": label, "at": 1})
        conductor = NonBlockingConductor("c", board, persistence, claim_ttl=1.0,
                                         wait_timeout=0.05, board_backoff_base=0.05,
                                         board_backoff_max=0.1)
        events = tc.EventRecorder()
        conductor.notifier.register(ANY, events)
        conductor.notifier.register(
            "job_consumed", lambda _, details: _log(label, "consumed", -1, ""))
        runner = threading.Thread(target=conductor.run, daemon=True)
        runner.start()
        try:
            assert tc.gate(f"{label}:reached").wait(30)
            proxy.cut()
            wait_until(lambda: conductor.statistics["claims_lost"] >= 1)  # the lease ran out
            wait_until(lambda: direct.find_owner(job) is None)  # and so did the claim
            proxy.restore()
            # The conductor claims the job again (fence 2) while step 1 still runs.
            wait_until(lambda: fence_of(direct, job) >= 2 and (
                events.names(job).count("compilation_start") >= 2
                or direct.find_owner(job) is None))
            tc.gate(label).set()  # the old run ends its step (its claim lost: it suspends)
            assert events.wait_for("job_consumed", timeout=30)
        finally:
            tc.gate(label).set()
            conductor.stop()
            assert conductor.wait(30)
            runner.join(30)
        log = LOGS.pop(label)
        consumed = log.index(("consumed", -1, ""))
        assert log[consumed + 1:] == [], "steps ran after the job was consumed"
        ended = [step for what, step, _ in log if what == "end"]
        assert sorted(ended) == [0, 1, 2, 3], f"a step succeeded twice (or never): {log}"
        started = [step for what, step, _ in log if what == "start"]
        assert sorted(started) == [0, 1, 2, 3], f"a step ran twice: {log}"
        assert events.names(job).count("job_consumed") == 1
        assert direct.job_count == 0
        (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
        assert flow_detail.state is FlowState.SUCCESS
