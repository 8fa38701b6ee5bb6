"""The engine example runs, and a second run of the same database does no work again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "engine_quickstart.py"


def test_quickstart_runs_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    first = subprocess.run([sys.executable, str(EXAMPLE), str(db)], capture_output=True,
                           text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "tracking: track-res-42-2-paid-42-19.50" in first.stdout
    assert "-> RETRYING" in first.stdout  # the first charge failed and was retried
    second = subprocess.run([sys.executable, str(EXAMPLE), str(db)], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "tracking: track-res-42-2-paid-42-19.50" in second.stdout
    assert "atom" not in second.stdout  # every step was already done
