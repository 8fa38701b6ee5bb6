"""Passwords in board and persistence URLs never reach output, logs or command lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from legato.cli import _demo_run

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]
SECRET = "S3cretPW"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}


def run(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True,
                            env=_env(), timeout=120, check=False)
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def with_password(url: str) -> str:
    """``url`` with the password ``S3cretPW`` (the shared PostgreSQL trusts loopback and
    ignores it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    netloc = f"{user}:{SECRET}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    assert SECRET not in result.stdout, result.stdout
    assert SECRET not in result.stderr, result.stderr


def test_conductor_and_listings_never_print_the_password(postgres_url: str,
                                                         tmp_path: Path) -> None:
    url = with_password(postgres_url)
    urls = ("--board", url, "--persistence", url)
    store = json.dumps({"job_name": "j", "log_path": str(tmp_path / "effects.jsonl"),
                        "step_delay": 0})
    for _ in range(2):
        assert_no_secret(run(tmp_path, *urls, "post", "legato.demo:demo_flow", "--arg", "1",
                             "--store", store))
    for output in ([], ["--json"]):
        started = run(tmp_path, *urls, *output, "conductor", "--max-dispatches", "1",
                      "--allow", "legato.demo", "--verbose")
        assert "started" in started.stdout and "127.0.0.1" in started.stdout
        assert_no_secret(started)
    for args in (["jobs", "list"], ["jobs", "list", "--trash"], ["conductors"]):
        assert_no_secret(run(tmp_path, *urls, *args))
        assert_no_secret(run(tmp_path, *urls, "--json", *args))


@pytest.mark.parametrize("board", [
    f"postgresql://postgres:{SECRET}@127.0.0.1:1/test",
    f"redis://:{SECRET}@127.0.0.1:1/0",
    f"redis+sentinel://:{SECRET}@127.0.0.1:1",  # no service name: the URL is refused
    f"redis+sentinel://:{SECRET}@127.0.0.1:1/service",
    f"redis://:{SECRET}@127.0.0.1:1/0?bogus=1",
    f"postgresql://postgres@127.0.0.1:1/test?password={SECRET}",
])
def test_errors_for_unreachable_or_bad_urls_do_not_show_the_password(
        board: str, tmp_path: Path) -> None:
    for output in ([], ["--json"]):
        result = run(tmp_path, "--board", board, "--persistence",
                     f"sqlite:///{tmp_path / 'p.db'}", *output, "jobs", "list", ok=False)
        assert result.returncode != 0
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
            result.stderr
        assert_no_secret(result)


def test_demo_conductors_get_urls_from_the_environment(postgres_url: str,
                                                       tmp_path: Path) -> None:
    url = with_password(postgres_url)
    worker = _demo_run.start_worker("conductor-1", board_url=url, persistence_url=url, ttl=2,
                                    workdir=tmp_path)
    try:
        # What `ps` shows: the command line of the process itself.
        cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().decode()
        assert SECRET not in cmdline and "--board" not in cmdline
        assert SECRET not in " ".join(str(a) for a in worker.proc.args)  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        while '"started"' not in worker.log_path.read_text() and worker.proc.poll() is None:
            assert time.monotonic() < deadline, worker.log_path.read_text()
            time.sleep(0.05)
        log = worker.log_path.read_text()
        assert '"started"' in log, log  # it reached the board named in its environment
        assert SECRET not in log
    finally:
        _demo_run.stop_workers([worker])


def test_test_conductor_process_reads_its_urls_from_the_environment(postgres_url: str,
                                                                    tmp_path: Path) -> None:
    from legato import jobboard, persistence
    from legato.testing.conductor import add_flow, post_job

    url = with_password(postgres_url)
    backend = persistence.connect(url)
    try:
        backend.upgrade()
        with jobboard.connect(url, persistence=backend) as board:
            job = post_job(board, backend, add_flow, store={"x": 1, "y": 2})
            env = {**_env(), "LEGATO_BOARD": url, "LEGATO_PERSISTENCE": url}
            result = subprocess.run([sys.executable, "-m", "legato.testing.conductor",
                                     "--max-dispatches", "1"], capture_output=True, text=True,
                                    env=env, timeout=120, check=False)
            assert result.returncode == 0, result.stderr
            assert result.stdout.startswith("ready ")
            assert board.job_count == 0 and not list(board.iter_trash())
            [flow_detail] = backend.get_logbook(job.book_uuid).flows.values()
            assert str(flow_detail.state) == "SUCCESS"
    finally:
        backend.close()
