"""The ``legato`` command in subprocesses, on the embedded SQLite default of a fresh folder.

Each command is run as users run it (the installed script, or ``python -m legato.cli``), with
the current directory set to a temporary folder so the default ``.legato/legato.db`` is private.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from legato import jobboard
from legato.testing import conductor as tc

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]
DEMO_FACTORY = "legato.demo:demo_flow"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(extra)
    return env


def legato(cwd: Path, *args: str, ok: bool = True, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``legato ARGS`` in ``cwd``; with ``ok`` assert it exits 0."""
    result = subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True,
                            env=env or _env(), timeout=timeout, check=False)
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def legato_json(cwd: Path, *args: str) -> Any:
    return json.loads(legato(cwd, "--json", *args).stdout)


def post_demo(cwd: Path, *extra: str, name: str = "job", steps: int = 2,
              delay: float = 0.0) -> str:
    store = json.dumps({"job_name": name, "log_path": str(cwd / "effects.jsonl"),
                        "step_delay": delay})
    return legato(cwd, "post", DEMO_FACTORY, "--store", store, "--name", name,
                  "--arg", str(steps), *extra).stdout.strip()


def test_post_list_show_run_and_flow_show(tmp_path: Path) -> None:
    job_uuid = post_demo(tmp_path, "--priority", "high", name="first", steps=3)
    assert len(job_uuid) == 36
    assert (tmp_path / ".legato" / "legato.db").exists()

    [row] = legato_json(tmp_path, "jobs", "list")
    assert (row["uuid"], row["name"], row["priority"], row["state"], row["attempts"]) == (
        job_uuid, "first", "HIGH", "UNCLAIMED", 0)
    plain = legato(tmp_path, "jobs", "list").stdout
    assert plain.splitlines()[0].split()[:4] == ["UUID", "NAME", "PRIORITY", "STATE"]
    assert job_uuid in plain

    shown = legato_json(tmp_path, "jobs", "show", job_uuid[:8])  # a unique prefix is enough
    assert shown["details"]["store"]["job_name"] == "first"
    assert shown["flows"][0]["factory"] == DEMO_FACTORY
    assert shown["flows"][0]["state"] == "PENDING"

    events = legato(tmp_path, "--json", "conductor", "--max-dispatches", "1",
                    "--allow", "legato.demo").stdout
    kinds = [json.loads(line)["event"] for line in events.splitlines()]
    assert kinds[0] == "started" and kinds[-1] == "stopped"
    assert "running_start" in kinds and "job_consumed" in kinds
    assert legato_json(tmp_path, "jobs", "list") == []

    flow = legato_json(tmp_path, "flow", "show", shown["book_uuid"])
    atoms = flow["flows"][0]["atoms"]
    assert [(a["name"], a["state"]) for a in atoms] == [
        ("step-1", "SUCCESS"), ("step-2", "SUCCESS"), ("step-3", "SUCCESS")]
    assert atoms[0]["results"]["step"] == 1
    assert all(a["duration"] is not None for a in atoms)  # the CLI conductor records timings
    text = legato(tmp_path, "flow", "show", "first").stdout  # the consumed job's book, by name
    assert "step-3" in text and "SUCCESS" in text


def test_disallowed_factory_is_abandoned_then_trashed_then_requeued_and_run(
        tmp_path: Path) -> None:
    job_uuid = post_demo(tmp_path, name="refused")
    out = legato(tmp_path, "--json", "conductor", "--max-dispatches", "1").stdout
    abandoned = [json.loads(line) for line in out.splitlines()
                 if json.loads(line)["event"] == "job_abandoned"]
    assert abandoned and "not registered" in abandoned[0]["reason"]
    [waiting] = legato_json(tmp_path, "jobs", "list")  # refused here, fine elsewhere: kept
    assert waiting["uuid"] == job_uuid and legato_json(tmp_path, "jobs", "list", "--trash") == []

    trashing = legato(tmp_path, "conductor", "--max-dispatches", "1", "--max-attempts", "1",
                      ok=False)
    assert trashing.returncode == 1 and "1 of 1 dispatched jobs were trashed" in trashing.stderr
    [row] = legato_json(tmp_path, "jobs", "list", "--trash")
    assert row["uuid"] == job_uuid
    assert row["reason"].startswith("too many attempts: factory refused on conductor@")
    assert "refused" in legato(tmp_path, "jobs", "list", "--trash").stdout

    [new] = legato_json(tmp_path, "jobs", "requeue", job_uuid)
    assert new["requeued_from"] == job_uuid and new["uuid"] != job_uuid
    [queued] = legato_json(tmp_path, "jobs", "list")
    assert (queued["uuid"], queued["name"], queued["book_uuid"]) == (
        new["uuid"], "refused", row["book_uuid"])

    legato(tmp_path, "conductor", "--kind", "nonblocking", "--workers", "2",
           "--max-dispatches", "1", "--allow", "legato.demo")
    flow = legato_json(tmp_path, "flow", "show", row["book_uuid"])
    assert flow["flows"][0]["state"] == "SUCCESS"


def _post_raw(cwd: Path, name: str, factory: dict[str, Any]) -> str:
    """Post a job whose flow detail records ``factory`` as given: what anyone able to write to
    the board and persistence can do, bypassing ``save_factory_details``."""
    from legato import persistence
    from legato.persistence.models import FlowDetail, LogBook

    (cwd / ".legato").mkdir(exist_ok=True)
    url = f"sqlite:///{cwd / '.legato' / 'legato.db'}"
    backend = persistence.connect(url)
    try:
        backend.upgrade()
        book = LogBook(name)
        flow_detail = FlowDetail(name, meta={"factory": factory})
        book.add(flow_detail)
        backend.save_logbook(book)
        with jobboard.connect(url, persistence=backend) as board:
            return board.post(name, book, {"flow_uuid": flow_detail.uuid}).uuid
    finally:
        backend.close()


@pytest.mark.parametrize("factory_name", ["legato.demo:os.system", "legato.demo:os.popen"])
def test_factory_name_walking_into_an_import_is_refused_and_never_called(
        tmp_path: Path, factory_name: str) -> None:
    marker = tmp_path / "marker"
    job_uuid = _post_raw(tmp_path, "attack", {"name": factory_name,
                                             "args": [f"touch {marker}"], "kwargs": {}})
    out = legato(tmp_path, "--json", "conductor", "--max-dispatches", "1",
                 "--allow", "legato.demo").stdout
    assert not marker.exists()
    events = [json.loads(line) for line in out.splitlines()]
    abandoned = [e for e in events if e["event"] == "job_abandoned"]
    assert [e["job"] for e in abandoned] == [job_uuid]
    assert "factory refused" in abandoned[0]["reason"]


def test_trash_unclaimed_and_refuse_claimed(tmp_path: Path) -> None:
    free = post_demo(tmp_path, name="free")
    held = post_demo(tmp_path, name="held")
    url = f"sqlite:///{tmp_path / '.legato' / 'legato.db'}"
    with jobboard.connect(url) as board:
        board.claim(board.get(held), "someone-else", ttl=60)

        assert legato(tmp_path, "jobs", "trash", free, "--reason", "not needed").stdout.startswith(
            "trashed")
        refused = legato(tmp_path, "jobs", "trash", held, ok=False)
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1 and "someone-else" in refused.stderr
        assert board.find_owner(board.get(held)) == "someone-else"
    [row] = legato_json(tmp_path, "jobs", "list", "--trash")
    assert (row["uuid"], row["reason"]) == (free, "not needed")


def _read_event(proc: subprocess.Popen[str], wanted: str, timeout: float = 30) -> dict[str, Any]:
    line = tc.next_line(proc.stdout, lambda text: json.loads(text)["event"] == wanted, timeout,
                        f"no {wanted!r} event within {timeout}s")
    event: dict[str, Any] = json.loads(line)
    return event


def test_conductor_lists_itself_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    job_uuid = post_demo(tmp_path, name="long", steps=50, delay=0.2)
    with subprocess.Popen([*LEGATO, "--json", "conductor", "--name", "worker", "--allow",
                           "legato.demo", "--ttl", "30"], cwd=tmp_path, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        started = _read_event(proc, "started")
        _read_event(proc, "running_start")

        [live] = legato_json(tmp_path, "conductors")
        assert live["name"] == started["conductor"] and live["name"].startswith("worker@")
        assert live["pid"] == proc.pid and live["job_uuids"] == [job_uuid]
        assert "worker@" in legato(tmp_path, "conductors").stdout
        shown = legato_json(tmp_path, "jobs", "show", job_uuid)
        assert shown["owner"] == live["name"] and 0 < shown["claim_expires_in"] <= 30

        proc.send_signal(signal.SIGTERM)
        abandoned = _read_event(proc, "job_abandoned")
        assert abandoned["job"] == job_uuid
        assert proc.wait(timeout=30) == 0
    # Abandoned at once (no waiting for the 30 s lease): claimable again, progress kept.
    [row] = legato_json(tmp_path, "jobs", "list")
    assert (row["state"], row["owner"]) == ("UNCLAIMED", None)
    flow = legato_json(tmp_path, "flow", "show", job_uuid)
    done = [a for a in flow["flows"][0]["atoms"] if a["state"] == "SUCCESS"]
    assert 1 <= len(done) < 50
    assert legato_json(tmp_path, "conductors") == []


def test_global_options_anywhere_and_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    post_demo(tmp_path, "--board", url, "--persistence", url, name="there")
    assert legato_json(tmp_path, "jobs", "list") == []  # the default file holds nothing
    rows = json.loads(legato(tmp_path, "jobs", "list", "--json", f"--board={url}",
                             "--persistence", url).stdout)
    assert [r["name"] for r in rows] == ["there"]
    env = _env(LEGATO_BOARD=url, LEGATO_PERSISTENCE=url)
    assert [r["name"] for r in json.loads(legato(tmp_path, "--json", "jobs", "list",
                                                 env=env).stdout)] == ["there"]


BAD_INPUTS = [
    (["--board", "nosuch://x", "jobs", "list"], "nosuch"),
    (["post", DEMO_FACTORY, "--store", "{not json"], "--store is not valid JSON"),
    (["post", "no_such_module_xyz:make"], "no_such_module_xyz"),
    (["post", "legato.demo"], "module:function"),
    (["post", DEMO_FACTORY, "--priority", "urgent"], "urgent"),
    (["jobs", "show", "0000dead"], "0000dead"),
    (["jobs", "requeue", "0000dead"], "0000dead"),
    (["flow", "show", "0000dead"], "0000dead"),
    (["conductor", "--kind", "weird"], "weird"),
    (["conductor", "--max-attempts", "0"], "--max-attempts"),
    (["conductor", "--claim-ahead-below", "-1"], "--claim-ahead-below"),
    (["conductor", "--kind", "nonblocking", "--claim-ahead-below", "1"], "--kind blocking only"),
    (["demo", "--conductors", "1"], "--conductors"),
    (["--board", "memory://", "--persistence", "memory://", "demo"], "memory"),
    (["jobs", "list", "--bogus"], "--bogus"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], needle: str) -> None:
    result = legato(tmp_path, *args, ok=False)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_bare_command(tmp_path: Path) -> None:
    assert legato(tmp_path, "--version").stdout.strip() == "legato 0.1.0"
    bare = legato(tmp_path, ok=False)
    assert bare.returncode == 2 and "Usage: legato" in bare.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = legato(tmp_path, "--debug", "jobs", "show", "0000dead", ok=False)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "NotFound" in result.stderr


def test_garbage_on_the_board_is_one_warning_line_never_a_traceback(tmp_path: Path) -> None:
    """A job row no board could have written (details nested 975 deep once crashed
    ``jobs list``) is skipped by ``jobs list`` with a one-line warning; ``jobs show`` of it
    says in one line that it cannot be decoded."""
    good = post_demo(tmp_path, name="good")
    deep = '{"a":' * 974 + "{}" + "}" * 974
    db = sqlite3.connect(tmp_path / ".legato" / "legato.db")
    with db:
        for uuid, details, priority in (("0badc0de-0000-4000-8000-000000000001", deep, 0),
                                        ("0badc0de-0000-4000-8000-000000000002", "{}", "abc")):
            db.execute("INSERT INTO legato_jb_jobs (uuid, name, details, priority, created_on,"
                       " state, attempts, fence) VALUES (?, 'garbage', ?, ?, 1.0,"
                       " 'UNCLAIMED', 0, 0)", (uuid, details, priority))
    db.close()
    listed = legato(tmp_path, "--json", "jobs", "list")
    assert [row["uuid"] for row in json.loads(listed.stdout)] == [good]
    assert "Traceback" not in listed.stderr
    warnings = listed.stderr.strip().splitlines()
    assert len(warnings) == 2 and all("0badc0de" in line for line in warnings), listed.stderr
    shown = legato(tmp_path, "jobs", "show", "0badc0de-0000-4000-8000-000000000001", ok=False)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert shown.stderr.startswith("error: GarbageRecord: garbage record")
    assert shown.stderr.count("\n") == 1, shown.stderr


@pytest.mark.parametrize("depth", [70, 975, 20_000])
def test_post_refuses_details_nested_too_deep_in_one_line(tmp_path: Path, depth: int) -> None:
    store = '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)
    result = legato(tmp_path, "post", DEMO_FACTORY, "--store", store, ok=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "64 levels" in result.stderr or "too deep" in result.stderr


def test_conductor_on_a_damaged_persistence_file_exits_with_one_error_line(
        tmp_path: Path) -> None:
    """A corrupt SQLite persistence file is no outage: ``legato conductor`` stops at once with
    one ``error: StorageCorrupted`` line (exit 2 when it meets the damage opening the store,
    before any claim; 1 running a job), instead of abandoning the same jobs forever."""
    store = f"sqlite:///{tmp_path / 'store.db'}"
    for i in range(2):  # padded: the file gets several pages
        padded = json.dumps({"job_name": f"job-{i}", "log_path": str(tmp_path / "effects"),
                             "padding": "x" * 6000})
        legato(tmp_path, "--persistence", store, "post", DEMO_FACTORY, "--store", padded)
    path = tmp_path / "store.db"
    size = path.stat().st_size
    with path.open("r+b") as file:  # every page but the first becomes garbage
        file.seek(4096)
        file.write(b"\xa5" * (size - 4096))
    result = legato(tmp_path, "--persistence", store, "conductor", "--allow", "legato.demo",
                    "--max-dispatches", "5", ok=False, timeout=120)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    errors_shown = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors_shown == [errors_shown[0]] and "StorageCorrupted" in errors_shown[0]
    assert "damaged" in errors_shown[0]
    assert result.stdout.count("abandoned") <= 1, result.stdout
    assert legato_json(tmp_path, "jobs", "list", "--trash") == []
    assert len(legato_json(tmp_path, "jobs", "list")) == 2


def test_post_refuses_a_store_without_the_flow_inputs(tmp_path: Path) -> None:
    partial = json.dumps({"job_name": "x"})
    result = legato(tmp_path, "post", DEMO_FACTORY, "--store", partial, "--arg", "2", ok=False)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "log_path" in result.stderr and "job_name" not in result.stderr
    assert "Traceback" not in result.stderr
    none = legato(tmp_path, "post", DEMO_FACTORY, ok=False)
    assert "job_name" in none.stderr and "log_path" in none.stderr
    assert legato_json(tmp_path, "jobs", "list") == []  # nothing was posted


def test_jobs_cancel_waiting_running_and_unknown(tmp_path: Path) -> None:
    waiting = post_demo(tmp_path, name="waiting")
    out = legato(tmp_path, "jobs", "cancel", waiting[:8], "--reason", "not needed").stdout
    assert out.strip() == f"cancelled {waiting}: trashed"
    [row] = legato_json(tmp_path, "jobs", "list", "--trash")
    assert row["uuid"] == waiting and row["reason"].startswith("cancelled by ")
    assert row["reason"].endswith(": not needed")

    running = post_demo(tmp_path, name="running", steps=40, delay=0.25)
    with subprocess.Popen([*LEGATO, "--json", "conductor", "--verbose", "--ttl", "1.5",
                           "--max-dispatches", "1", "--allow", "legato.demo"], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=_env()) as proc:
        try:
            _read_event(proc, "running_start")
            cancelled = legato_json(tmp_path, "jobs", "cancel", running, "--reason",
                                    "wrong input")
            assert cancelled["trashed"] is False
            trashed = _read_event(proc, "job_trashed")
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert trashed["reason"].startswith("cancelled by ") and "wrong input" in trashed["reason"]
    # The history of each says who cancelled it, when and why.
    for uuid, why in ((waiting, "not needed"), (running, "wrong input")):
        last = legato_json(tmp_path, "jobs", "history", uuid)["claims"][-1]
        assert last["outcome"] == "trashed" and last["reason"].startswith("cancelled by ")
        assert last["reason"].endswith(f": {why}")
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "effects.jsonl").read_text().splitlines()
             if json.loads(line)["job"] == "running"]
    assert 0 < len(steps) < 40  # suspended at an atom boundary, the rest never ran
    reasons = {r["uuid"]: r["reason"] for r in legato_json(tmp_path, "jobs", "list", "--trash")}
    assert reasons[running] == trashed["reason"]

    unknown = legato(tmp_path, "jobs", "cancel", "0000dead", ok=False)
    assert unknown.returncode != 0 and unknown.stderr.count("\n") == 1
    assert unknown.stderr.startswith("error: ") and "0000dead" in unknown.stderr


def test_read_only_commands_write_nothing_when_the_schema_is_current(tmp_path: Path) -> None:
    job_uuid = post_demo(tmp_path, name="read me")
    book = legato_json(tmp_path, "jobs", "show", job_uuid)["book_uuid"]
    # Another process holds SQLite's write lock: a command that tried to write (a schema
    # upgrade, say) would wait for it; the read-only ones must not need it.
    writer = sqlite3.connect(tmp_path / ".legato" / "legato.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        for args in (["jobs", "list"], ["jobs", "show", job_uuid], ["flow", "show", book],
                     ["conductors"]):
            result = legato(tmp_path, *args, timeout=30)
            assert "Traceback" not in result.stderr
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_the_default_folder_is_git_ignored(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    post_demo(tmp_path, name="ignored")
    assert (tmp_path / ".legato" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert ".legato" not in status  # the database, its WAL and the .gitignore itself


#: One bad input for every command: each fails with ``error: <kind>: <message>`` on one line.
EVERY_COMMAND_BAD = [
    ["post", "legato.demo:nope"],
    ["conductor", "--workers", "-3", "--kind", "nonblocking", "--max-attempts", "0"],
    ["demo", "--conductors", "1"],
    ["jobs", "list", "--limit", "-1"],
    ["jobs", "show", "0000dead"],
    ["jobs", "trash", "0000dead"],
    ["jobs", "cancel", "0000dead"],
    ["jobs", "requeue", "0000dead"],
    ["flow", "show", "0000dead"],
    ["--board", "sqlite://x.db", "conductors"],
    ["jobs", "list", "--bogus"],
    ["--board", "bogus://x", "jobs", "list"],
]


@pytest.mark.parametrize("args", EVERY_COMMAND_BAD, ids=" ".join)
def test_every_command_reports_errors_as_kind_and_message(tmp_path: Path,
                                                          args: list[str]) -> None:
    result = legato(tmp_path, *args, ok=False)
    assert result.returncode != 0
    assert re.fullmatch(r"error: [A-Z][A-Za-z]+: \S.*\n", result.stderr), result.stderr
