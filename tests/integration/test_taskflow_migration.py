"""The worked example of docs/migrating-from-taskflow.md: a TaskFlow program (jobboard,
conductor, a flow with a retry) moved to Legato by changing its imports, its board's URL and
marking its flow factory — nothing else — runs to the same end."""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "taskflow_migration"


def _changed_lines() -> list[str]:
    before = (EXAMPLE / "taskflow_payment.py").read_text().splitlines()
    after = (EXAMPLE / "legato_payment.py").read_text().splitlines()
    body = slice(next(i for i, line in enumerate(after) if line.startswith("import")), None)
    start = next(i for i, line in enumerate(before) if line.startswith("import"))
    return [line for line in difflib.unified_diff(before[start:], after[body], lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_only_imports_the_board_url_and_the_factory_mark_change() -> None:
    changed = _changed_lines()
    assert changed, "the two programs are identical"
    for line in changed:
        text = line[1:].strip()
        assert (not text or text.startswith(("import ", "from ", "BOARD = ", '"namespace"'))
                or text == "@legato.flow_factory"), f"unexpected change: {line}"
    assert "+@legato.flow_factory" in changed
    assert [line for line in changed if line.startswith("+BOARD")] == [
        '+BOARD = "redis://127.0.0.1:6379/0?namespace=" + os.environ.get("PAYMENTS_NAMESPACE", '
        '"payments")']


def test_the_migrated_program_runs_its_job_to_the_end(redis_url: str, tmp_path: Path) -> None:
    namespace = parse_qs(urlsplit(redis_url).query)["namespace"][0]
    env = dict(os.environ, PAYMENTS_NAMESPACE=namespace)
    done = subprocess.run([sys.executable, str(EXAMPLE / "legato_payment.py")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "charge attempt undone for order 42",
        "charge attempt undone for order 42",
        "customer notified: receipt-42-1999",
        "flow: SUCCESS",
        "gateway calls: 3",
        "jobs left on the board: 0",
    ]
    assert "Traceback" not in done.stderr
