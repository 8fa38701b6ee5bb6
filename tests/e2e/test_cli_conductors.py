"""``legato conductors`` shows a conductor that paused itself because it looks misconfigured
(what it publishes in its registration: ``metadata["paused"]``), and how it claims again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from legato import jobboard, persistence
from legato.conductor import BlockingConductor
from legato.persistence.models import FlowDetail, LogBook
from legato.testing.conductor import wait_until

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]


def legato(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``legato ARGS`` in ``cwd`` (no LEGATO_* variables); assert it exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    result = subprocess.run(
        [*LEGATO, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def legato_json(cwd: Path, *args: str) -> Any:
    return json.loads(legato(cwd, "--json", *args).stdout)


def _post_by_name(board: jobboard.JobBoard, store: persistence.Persistence, factory: str) -> None:
    """Post a job whose flow detail names ``factory`` (a module nothing can import)."""
    book = LogBook("job")
    detail = FlowDetail("job")
    detail.meta["factory"] = {"name": factory, "args": [], "kwargs": {}}
    book.add(detail)
    store.save_logbook(book)
    board.post("job", book=store.get_logbook(book.uuid))


def test_conductors_shows_a_paused_conductor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / '.legato' / 'legato.db'}"
    (tmp_path / ".legato").mkdir()
    module = f"legato_cli_pause_{uuid.uuid4().hex}"
    store = persistence.connect(url)
    store.upgrade()
    with jobboard.connect(url, persistence=store) as board:
        for _ in range(3):
            _post_by_name(board, store, f"{module}:make")
        bad = BlockingConductor(
            "bad",
            board,
            store,
            wait_timeout=0.05,
            backoff_base=0.01,
            backoff_max=0.01,
            pause_after=3,
            pause_for=600.0,
            allowed_factories=[module],
        )
        thread = threading.Thread(target=bad.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: bool(_paused(tmp_path)), timeout=30)
            [row] = legato_json(tmp_path, "conductors")
            assert row["name"] == bad.conductor.name
            assert row["paused"]["jobs"] == 3 and "factory not found" in row["paused"]["reason"]
            text = legato(tmp_path, "conductors").stdout
            assert "STATE" in text.splitlines()[0]
            assert "PAUSED until" in text and "3 jobs in a row could not run" in text
            assert "factory not found" in text
        finally:
            bad.stop()
            assert bad.wait(30)
            thread.join(30)
    store.close()


def test_conductors_shows_a_claiming_conductor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / '.legato' / 'legato.db'}"
    (tmp_path / ".legato").mkdir()
    store = persistence.connect(url)
    store.upgrade()
    with jobboard.connect(url, persistence=store) as board:
        good = BlockingConductor("good", board, store, wait_timeout=0.05)
        thread = threading.Thread(target=good.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: bool(legato_json(tmp_path, "conductors")), timeout=30)
            [row] = legato_json(tmp_path, "conductors")
            assert row["paused"] is None
            assert "claiming" in legato(tmp_path, "conductors").stdout
        finally:
            good.stop()
            assert good.wait(30)
            thread.join(30)
    store.close()


def _paused(cwd: Path) -> list[dict[str, object]]:
    return [row for row in legato_json(cwd, "conductors") if row.get("paused")]


def test_conductors_lists_held_jobs_and_stats_the_oldest_waiting(tmp_path: Path) -> None:
    """``conductors`` finds what each holds from the board's index of claims; ``stats`` gives
    the age of the oldest waiting job, whatever its priority."""
    url = f"sqlite:///{tmp_path / '.legato' / 'legato.db'}"
    (tmp_path / ".legato").mkdir()
    with jobboard.connect(url) as board:
        assert legato_json(tmp_path, "stats")["oldest_waiting_age"] is None
        board.register_entity(jobboard.Entity("conductor", "conductor-x"), ttl=3600)
        jobs = [board.post(f"job-{i}", priority="low") for i in range(4)]
        board.post("urgent", priority="very_high")
        held = board.claim(jobs[3], "conductor-x", ttl=3600)
        board.claim(jobs[0], "someone-else", ttl=3600)
    [row] = legato_json(tmp_path, "conductors")
    assert (row["name"], row["job_uuids"]) == ("conductor-x", [held.uuid])
    stats = legato_json(tmp_path, "stats")
    assert stats["waiting"] == 3 and stats["oldest_waiting_age"] >= 0
