"""Set-up mistakes from a fresh folder never destroy jobs: ``legato conductor`` refuses to start
on what it can check (one line, exit status 2, before any claim), and a conductor that cannot
run a job leaves it for a correctly configured one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]

FLOWS = '''
import legato


@legato.task(provides="greeting")
def greet(name: str) -> str:
    return f"hello {name}"


@legato.flow_factory
def etl() -> legato.LinearFlow:
    return legato.LinearFlow("etl").add(greet)
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A fresh folder holding the package ``myapp`` with a registered factory
    ``myapp.flows:etl``."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "flows.py").write_text(FLOWS)
    return tmp_path


def legato(cwd: Path, *args: str, ok: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``legato ARGS`` in ``cwd`` (no LEGATO_* variables); with ``ok`` assert exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    result = subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True,
                            env=env, timeout=timeout, check=False)
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def legato_json(cwd: Path, *args: str) -> Any:
    return json.loads(legato(cwd, "--json", *args).stdout)


def post_etl(cwd: Path, count: int = 1) -> list[str]:
    """Post ``count`` jobs; their uuids (``BOOKS`` maps each to its logbook's)."""
    posted = [legato_json(cwd, "post", "myapp.flows:etl", "--store", '{"name": "world"}')
              for _ in range(count)]
    BOOKS.update((job["uuid"], job["book_uuid"]) for job in posted)
    return [job["uuid"] for job in posted]


BOOKS: dict[str, str] = {}


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def conductor_json(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return legato(cwd, "--json", "conductor", "--max-dispatches", "1", *args, ok=ok)


def finished(cwd: Path, job_uuid: str) -> bool:
    """Whether the job's flow ran to SUCCESS (its book stays after consumption)."""
    shown = legato_json(cwd, "flow", "show", BOOKS[job_uuid])
    return bool(shown["flows"][0]["state"] == "SUCCESS")


@pytest.mark.parametrize(("args", "reason"), [
    ((), "factory refused: flow factory 'myapp.flows:etl' is not registered and not under an "
         "allowed prefix (none allowed)"),
    (("--engine", "serial", "--persistence", "sqlite:///other.db"), "logbook not found"),
])
def test_a_job_this_conductor_cannot_run_is_abandoned_not_trashed(
        app: Path, args: tuple[str, ...], reason: str) -> None:
    [job_uuid] = post_etl(app)
    result = conductor_json(app, *args)
    [abandoned] = [e for e in events_of(result.stdout) if e["event"] == "job_abandoned"]
    assert abandoned["job"] == job_uuid and abandoned["reason"].startswith(reason)
    [waiting] = legato_json(app, "jobs", "list")
    assert waiting["uuid"] == job_uuid and waiting["attempts"] == 1
    assert legato_json(app, "jobs", "list", "--trash") == []
    assert "[so far: " in legato_json(app, "jobs", "show", job_uuid)["reason"]

    done = conductor_json(app, "--import", "myapp.flows")  # the current directory imports
    assert [e["event"] for e in events_of(done.stdout)][-2:] == ["job_consumed", "stopped"]
    assert legato_json(app, "jobs", "list") == [] and finished(app, job_uuid)


def test_allow_imports_from_the_current_directory(app: Path) -> None:
    [job_uuid] = post_etl(app)
    conductor_json(app, "--allow", "myapp")
    assert legato_json(app, "jobs", "list") == [] and finished(app, job_uuid)


def test_a_paused_conductor_leaves_every_job_for_a_good_one(app: Path) -> None:
    jobs = post_etl(app, 4)
    # The fourth claim comes after the pause that follows the third failure.
    bad = legato(app, "conductor", "--max-dispatches", "4", "--pause-after", "3",
                 "--pause-for", "0.1")
    [paused] = [line for line in bad.stderr.splitlines() if "PAUSED" in line]
    assert "could not build 3 jobs in a row" in paused and "factory refused" in paused
    assert len(legato_json(app, "jobs", "list")) == 4
    assert legato_json(app, "jobs", "list", "--trash") == []
    legato(app, "conductor", "--max-dispatches", "4", "--import", "myapp.flows")
    assert all(finished(app, job) for job in jobs)


#: How every refusal to start begins.
START = "error: StartupError: "


@pytest.mark.parametrize(("args", "message"), [
    (("--allow", "nowhere_app"), START + "--allow nowhere_app: cannot import it: "
                                 "ModuleNotFoundError: No module named 'nowhere_app'"),
    (("--import", "nowhere_app.flows"), START + "--import nowhere_app.flows: cannot import it"),
    (("--engine", "bogus"), START + "--engine bogus: unknown legato.engines kind 'bogus'"),
    (("--kind", "bogus"), START + "cannot start: NotFound: unknown legato.conductors kind"),
    (("--kind", "blocking", "--workers", "4"),
     START + "--workers 4 needs --kind nonblocking"),
    (("--kind", "nonblocking", "--workers", "0"), START + "--workers must be >= 1, not 0"),
    (("--max-dispatches", "0"), START + "--max-dispatches must be >= 1, not 0"),
    (("--max-attempts", "0"), START + "--max-attempts must be >= 1, not 0"),
    (("--ttl", "0"), START + "--ttl must be > 0, not 0.0"),
    (("--kind", "nonblocking", "--claim-ahead-below", "0.1"),
     START + "--claim-ahead-below applies to --kind blocking only"),
    (("--board", "redis://127.0.0.1:1/0"), START + "cannot start: "),
    (("--persistence", "postgresql://nobody@127.0.0.1:1/none"), START + "cannot start: "),
])
def test_start_up_checks_refuse_with_one_line_and_exit_2(
        app: Path, args: tuple[str, ...], message: str) -> None:
    [job_uuid] = post_etl(app)
    result = legato(app, "conductor", *args, ok=False, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""  # not even started
    if "--board" not in args and "--persistence" not in args:
        [waiting] = legato_json(app, "jobs", "list")
        assert waiting["uuid"] == job_uuid and waiting["attempts"] == 0


def test_max_dispatches_exits_non_zero_when_a_job_was_trashed(app: Path) -> None:
    post_etl(app)
    result = legato(app, "conductor", "--max-dispatches", "1", "--max-attempts", "1", ok=False)
    assert result.returncode == 1
    assert result.stderr.endswith("error: JobsTrashed: 1 of 1 dispatched jobs were trashed "
                                  "(legato jobs list --trash says why)\n")
    [trashed] = legato_json(app, "jobs", "list", "--trash")
    assert trashed["reason"].startswith("too many attempts: factory refused on conductor@")



def trash(cwd: Path, job_uuid: str, reason: str) -> None:
    legato(cwd, "jobs", "trash", job_uuid, "--reason", reason)


def test_requeue_several_ids_and_twice_posts_once(app: Path) -> None:
    first, second, third = post_etl(app, 3)
    for job_uuid in (first, second, third):
        trash(app, job_uuid, "set aside")
    rows = legato_json(app, "jobs", "requeue", first, second[:8])
    assert [r["requeued_from"] for r in rows] == [first, second]
    assert [j["uuid"] for j in legato_json(app, "jobs", "list", "--trash")] == [third]
    again = legato(app, "jobs", "requeue", first, ok=False)
    assert again.returncode == 1
    assert again.stderr == f"error: NotFound: no job {first!r} in the trash\n"
    waiting = legato_json(app, "jobs", "list")
    assert sorted(j["uuid"] for j in waiting) == sorted(r["uuid"] for r in rows)
    assert {j["book_uuid"] for j in waiting} == {BOOKS[first], BOOKS[second]}
    legato(app, "conductor", "--max-dispatches", "2", "--import", "myapp.flows")
    assert finished(app, first) and finished(app, second)


def test_requeue_all_with_a_matching_reason(app: Path) -> None:
    jobs = post_etl(app, 3)
    for job_uuid, reason in zip(jobs, ["Factory refused: x", "other", "factory refused: y"],
                                strict=True):
        trash(app, job_uuid, reason)
    out = legato(app, "jobs", "requeue", "--all", "--reason", "factory refused").stdout
    assert len(out.split()) == 2
    [left] = legato_json(app, "jobs", "list", "--trash")
    assert left["uuid"] == jobs[1]
    assert len(legato_json(app, "jobs", "list")) == 2
    assert "no trashed job matches" in legato(app, "jobs", "requeue", "--all", "--reason",
                                              "refused").stdout


@pytest.mark.parametrize("args", [(), ("--reason", "x", "abc"), ("--all", "abc")])
def test_requeue_usage_errors(app: Path, args: tuple[str, ...]) -> None:
    result = legato(app, "jobs", "requeue", *args, ok=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
