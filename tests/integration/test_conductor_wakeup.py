"""An idle conductor on a PostgreSQL board starts a posted job on its notification, never on a
poll: its wait timeout and the board's poll interval are an hour, far beyond the test's time."""

from __future__ import annotations

import threading
from typing import Any

from legato import jobboard
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.testing import conductor as tc

HOUR = 3600.0


def test_idle_conductor_wakes_on_notify_not_its_poll_interval(postgres_url: str) -> None:
    persistence = lp.connect(postgres_url)
    persistence.upgrade()
    try:
        with jobboard.connect(postgres_url, persistence=persistence,
                              poll_interval=HOUR) as board, \
                jobboard.connect(postgres_url, persistence=persistence) as poster:
            idle = threading.Event()
            sleep = board._wait_for_change  # the board's own sleep, watched, not replaced

            def watched(timeout: float) -> None:
                idle.set()
                sleep(timeout)

            board._wait_for_change = watched  # type: ignore[method-assign]
            conductor = BlockingConductor("idle", board, persistence, wait_timeout=HOUR)
            started = threading.Event()
            conductor.notifier.register("running_start", lambda *_: started.set())
            consumed: list[Any] = []
            conductor.notifier.register("job_consumed", lambda _e, d: consumed.append(d["job"]))
            runner = threading.Thread(target=conductor.run, kwargs={"max_dispatches": 1})
            runner.start()
            try:
                assert idle.wait(30), "the conductor never went idle"
                assert not started.is_set()
                job = tc.post_job(poster, persistence, tc.steps_flow, kwargs={"steps": 1})
                assert started.wait(30), "the idle conductor did not wake for the post"
            finally:
                runner.join(30)
                conductor.stop()
            assert not runner.is_alive()
            assert [j.uuid for j in consumed] == [job.uuid]
    finally:
        persistence.close()
