"""Acceptance: a flow killed with SIGKILL mid-run resumes in a new process from the last step.

A five-task linear flow runs in a child process on SQLite, PostgreSQL and MariaDB. Task 4 announces
itself on stdout and blocks; the test then kills the child. Another child resumes the flow from
its flow detail (factory + ``load_from_detail``). Tasks 1-3 must not run again, 4 and 5 run
once, the flow ends SUCCESS, and 4 and 5 receive exactly the results stored for 3 and 4.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from legato.engine import save_factory_details
from legato.persistence import connect
from legato.persistence.models import FlowDetail, LogBook
from legato.states import AtomState, FlowState

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import crash_flow  # noqa: E402


def _child(url: str, flow_uuid: str, *, crash: bool) -> subprocess.Popen[str]:
    env = dict(os.environ, LEGATO_CRASH_AT_4="1" if crash else "0")
    return subprocess.Popen([sys.executable, str(HERE / "crash_flow.py"), url, flow_uuid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=HERE)


def _wait_for_line(proc: subprocess.Popen[str], expected: str, timeout: float = 60) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"child did not report {expected!r} in {timeout}s"
    line = proc.stdout.readline().strip()
    assert line == expected, (line, proc.stderr.read() if proc.stderr else "")


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url", "mysql_url"])
def test_killed_flow_resumes_without_repeating_steps(backend: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue(backend)
    journal = tmp_path / "journal.jsonl"
    with connect(url) as persistence:
        persistence.upgrade()
        book = LogBook("crash-book")
        fd = FlowDetail("crash")
        book.add(fd)
        persistence.save_logbook(book)
        save_factory_details(fd, crash_flow.make_flow, [str(journal)], persistence=persistence)

        with _child(url, fd.uuid, crash=True) as first:
            try:
                _wait_for_line(first, "task4-started")
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL

        crashed = persistence.get_flow_details(fd.uuid)
        states = {ad.name: ad.state for ad in crashed}
        assert states == {"step1": AtomState.SUCCESS, "step2": AtomState.SUCCESS,
                          "step3": AtomState.SUCCESS, "step4": AtomState.RUNNING,
                          "step5": AtomState.PENDING}
        assert crashed.state == FlowState.RUNNING

        with _child(url, fd.uuid, crash=False) as second:
            out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert out.strip() == "flow-finished"

        done = persistence.get_flow_details(fd.uuid)
    assert done.state == FlowState.SUCCESS
    results = {ad.name: ad.results for ad in done}
    assert all(ad.state == AtomState.SUCCESS for ad in done)

    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["step"] for e in entries] == [1, 2, 3, 4, 5]
    assert {e["pid"] for e in entries[:3]} == {first.pid}
    assert {e["pid"] for e in entries[3:]} == {second.pid}
    assert entries[3]["received"] == {"r3": results["step3"]}
    assert entries[4]["received"] == {"r4": results["step4"]}
    assert results["step3"]["pid"] == first.pid and results["step4"]["pid"] == second.pid
