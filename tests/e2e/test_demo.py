"""``legato demo``: conductor processes on embedded SQLite, one SIGKILLed, its job taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from legato.cli import _demo_view
from legato.cli._demo_run import Crash

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]


def test_demo_kills_a_conductor_and_another_resumes_its_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    result = subprocess.run(
        [*LEGATO, "--json", "demo", "--jobs", "4", "--conductors", "2", "--steps", "4",
         "--step-delay", "0.2", "--ttl", "1.5", "--timeout", "90"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    summary = json.loads(result.stdout.strip().splitlines()[-1])

    assert summary["ok"] and summary["completed"] == summary["jobs"] == 4
    assert summary["takeovers"] >= 1
    assert summary["steps_run"] == summary["steps_needed"] + summary["steps_rerun"]
    crash = summary["crash"]
    assert crash["recorded"] >= 1
    assert crash["resumed_by"] not in (None, crash["victim"])
    # Resumed from the last recorded step, not from the start.
    assert crash["resumed_from"] == crash["recorded"] + 1
    assert any(t["job"] == crash["job"] for t in summary["takeover_jobs"])
    assert not Path(summary["workdir"]).exists()  # a fresh folder each run, removed after


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
