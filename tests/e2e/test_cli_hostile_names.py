"""Names and reasons written by a job's producer cannot forge lines of the CLI's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]
EVIL = "evil\n\x1b[31mFAKE  UNCLAIMED [bold]x[/bold]"
SHOWN = "evil\\n\\x1b[31mFAKE  UNCLAIMED [bold]x[/bold]"


def run(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    result = subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "\x1b" not in result.stderr
    return result.stdout


def test_job_names_with_escapes_and_newlines_stay_on_their_line(tmp_path: Path) -> None:
    store = json.dumps({"job_name": "j", "log_path": str(tmp_path / "effects.jsonl"),
                        "step_delay": 0})
    job_uuid = run(tmp_path, "post", "legato.demo:demo_flow", "--arg", "1", "--store", store,
                   "--name", EVIL).strip()

    listed = run(tmp_path, "jobs", "list")
    assert "\x1b" not in listed
    header, *rows = listed.splitlines()
    assert header.split()[:2] == ["UUID", "NAME"]
    assert len(rows) == 1 and rows[0].startswith(job_uuid) and SHOWN in rows[0], listed
    [row] = json.loads(run(tmp_path, "--json", "jobs", "list"))
    assert row["name"] == EVIL  # --json stays exact

    shown = run(tmp_path, "jobs", "show", job_uuid)
    assert "\x1b" not in shown and SHOWN in shown
    assert not any(line.startswith("FAKE") for line in shown.splitlines()), shown
    data = json.loads(run(tmp_path, "--json", "jobs", "show", job_uuid))
    assert data["name"] == EVIL

    ran = run(tmp_path, "conductor", "--max-dispatches", "1", "--allow", "legato.demo")
    assert "\x1b" not in ran and SHOWN in ran
    assert not any(line.startswith("FAKE") for line in ran.splitlines()), ran

    flow = run(tmp_path, "flow", "show", data["book_uuid"])
    assert "\x1b" not in flow and SHOWN in flow
    assert not any(line.startswith("FAKE") for line in flow.splitlines()), flow

    trashed = run(tmp_path, "jobs", "list", "--trash")
    assert "\x1b" not in trashed


def test_a_nul_in_the_store_is_one_clear_error_on_postgresql(postgres_url: str,
                                                             tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    urls = ["--board", postgres_url, "--persistence", postgres_url]
    result = subprocess.run([*LEGATO, *urls, "post", "legato.demo:demo_flow", "--store",
                             '{"job_name": "a\\u0000b"}'], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr == ("error: ValueError: job details['store']['job_name'] contains a "
                             "NUL character (U+0000)\n")
    assert json.loads(run(tmp_path, *urls, "--json", "jobs", "list")) == []
