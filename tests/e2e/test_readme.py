"""The README's code runs as printed, and its quick start names exactly two commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_quick_start_has_exactly_two_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert [c.split()[0] for c in commands] == ["./scripts/demo", "./scripts/test"]
    for command in commands:
        assert (ROOT / command.split()[0]).is_file()


def test_library_snippet_runs_a_job_to_success(tmp_path: Path) -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    (tmp_path / "snippet.py").write_text(block.group(1))  # exactly as printed
    done = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello world"  # the snippet prints the greeting itself
    (tmp_path / "state.py").write_text(
        block.group(1) + "\nprint(store.get_logbook(book.uuid).find(flow_detail.uuid).state)\n")
    again = subprocess.run([sys.executable, "state.py"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-1] == "SUCCESS"
