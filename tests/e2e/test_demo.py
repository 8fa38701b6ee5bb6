"""``legato demo``: conductor processes on embedded SQLite, one SIGKILLed, its job taken over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from legato.cli import _demo_view
from legato.cli._demo_run import Crash

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]


def run_demo(cwd: Path, *urls: str) -> dict[str, Any]:
    """Run a small demo (on ``--board``/``--persistence`` URLs if given); return its summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    where = ["--board", urls[0], "--persistence", urls[1]] if urls else []
    result = subprocess.run(
        [*LEGATO, "--json", *where, "demo", "--jobs", "4", "--conductors", "2", "--steps", "4",
         "--step-delay", "0.2", "--ttl", "1.5", "--timeout", "90"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def test_demo_kills_a_conductor_and_another_resumes_its_job(tmp_path: Path) -> None:
    summary = run_demo(tmp_path)  # the embedded SQLite default, no services
    check_takeover(summary)
    assert not Path(summary["workdir"]).exists()  # a fresh folder each run, removed after


@pytest.mark.slow
@pytest.mark.parametrize("board", ["redis_url", "postgres_url"])
def test_demo_on_a_server_board(board: str, tmp_path: Path,
                                request: pytest.FixtureRequest) -> None:
    board_url: str = request.getfixturevalue(board)
    check_takeover(run_demo(tmp_path, board_url, f"sqlite:///{tmp_path / 'flows.db'}"))


def check_takeover(summary: dict[str, Any]) -> None:

    assert summary["ok"] and summary["completed"] == summary["jobs"] == 4
    assert summary["takeovers"] >= 1
    assert summary["steps_run"] == summary["steps_needed"] + summary["steps_rerun"]
    crash = summary["crash"]
    assert crash["recorded"] >= 1
    assert crash["resumed_by"] not in (None, crash["victim"])
    # Resumed from the last recorded step, not from the start.
    assert crash["resumed_from"] == crash["recorded"] + 1
    assert any(t["job"] == crash["job"] for t in summary["takeover_jobs"])


def test_plain_summary_carries_the_same_facts() -> None:
    summary = {"jobs": 3, "completed": 3, "steps_needed": 9, "steps_run": 10, "steps_rerun": 1,
               "takeovers": 1, "elapsed": 4.2, "ok": True}
    crash = Crash(victim="conductor-2", victim_pid=42, job="demo-job-01", recorded=2,
                  killed_at=10.0, resumed_by="conductor-1", resumed_at=11.5, resumed_from=3)
    lines = _demo_view.summary_lines(summary, crash)
    assert "jobs completed: 3/3" in lines
    assert "takeovers: 1" in lines[2]
    assert any("conductor-1 took demo-job-01 over 1.5s later and continued from step 3" in line
               for line in lines)
    assert lines[-1] == "result: OK"


def test_interrupted_demo_stops_its_conductors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    with subprocess.Popen([*LEGATO, "demo", "--jobs", "20", "--no-kill", "--keep"], cwd=tmp_path,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # "[ 0.4s] board ...; work folder /tmp/legato-demo-..."
        workdir = Path(first.rsplit("work folder ", 1)[1].strip())
        assert "posted 20 jobs" in proc.stdout.readline()
        for line in proc.stdout:  # progress lines every 2 s: wait until steps are running
            if "steps 0/" not in line:
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert proc.stderr.read().strip().endswith("error: KeyboardInterrupt: interrupted")
    try:
        logs = sorted(workdir.glob("conductor-*.log"))
        assert len(logs) == 3
        started = 0
        for log in logs:  # every conductor that got going was stopped (SIGTERM) and said so
            events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
            if "started" in events:
                started += 1
                assert events[-1] == "stopped", (log, events)
        assert started >= 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_demo_with_the_dashboard_serves_it_while_running_then_stops(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    import httpx

    from legato.testing.conductor import next_line

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    command = [*LEGATO, "demo", "--jobs", "3", "--conductors", "2", "--steps", "4",
               "--step-delay", "0.4", "--ttl", "1.5", "--dashboard", "--dashboard-linger", "300"]
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        try:
            line = next_line(proc.stdout, lambda text: "dashboard on http://" in text, 60,
                             "no dashboard URL")
            url = line.split("dashboard on ", 1)[1].split()[0].rstrip("/")
            assert url.startswith("http://127.0.0.1:")
            next_line(proc.stdout, lambda text: "posted 3 jobs" in text, 30, "no jobs posted")
            names = {j["name"] for j in httpx.get(f"{url}/api/jobs", timeout=10).json()["jobs"]}
            assert names <= {"demo-job-01", "demo-job-02", "demo-job-03"} and names
            assert proc.poll() is None  # answered while the demo runs
            next_line(proc.stdout, lambda text: "result: OK" in text, 90, "the demo failed")
            next_line(proc.stdout, lambda text: "stays up for 300s" in text, 10, "no linger")
            flows = httpx.get(f"{url}/api/flows", timeout=10).json()
            assert sorted(f["name"] for f in flows) == ["demo-job-01", "demo-job-02",
                                                        "demo-job-03"]
            assert {f["state"] for f in flows} == {"SUCCESS"}
            proc.send_signal(signal.SIGINT)  # Ctrl-C ends the lingering dashboard
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/stats", timeout=5)


def test_demo_dashboard_options_are_checked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    result = subprocess.run([*LEGATO, "demo", "--dashboard", "--dashboard-linger", "-1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0
    assert "--dashboard-linger >= 0" in result.stderr
    assert "Traceback" not in result.stderr
