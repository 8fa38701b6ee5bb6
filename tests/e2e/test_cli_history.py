"""``legato jobs show``/``jobs history``/``flow show`` by uuid and prefix after a job was consumed
or trashed, ``flows list`` with failed flows, and ``stats``: the ``legato`` command in
subprocesses on the embedded SQLite default of a fresh folder."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from legato import jobboard, persistence
from legato.testing import conductor as tc

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]


def legato(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``legato ARGS`` in ``cwd`` (no LEGATO_* variables); with ``ok`` assert it exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    result = subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def legato_json(cwd: Path, *args: str) -> Any:
    return json.loads(legato(cwd, "--json", *args).stdout)


def _url(cwd: Path) -> str:
    (cwd / ".legato").mkdir(exist_ok=True)
    return f"sqlite:///{cwd / '.legato' / 'legato.db'}"


#: Uuids of every job and logbook posted (by ``post``): what a prefix must not match.
POSTED: list[str] = []


def post(cwd: Path, factory: Any, count: int = 1, **kwargs: Any) -> list[str]:
    """Post ``count`` jobs of a ``legato.testing.conductor`` factory; their uuids."""
    url = _url(cwd)
    backend = persistence.connect(url)
    try:
        backend.upgrade()
        with jobboard.connect(url, persistence=backend) as board:
            jobs = [tc.post_job(board, backend, factory, **kwargs) for _ in range(count)]
    finally:
        backend.close()
    for job in jobs:
        POSTED.extend((job.uuid, job.book_uuid))
    return [job.uuid for job in jobs]


def run_conductor(cwd: Path, jobs: int, *extra: str, trashes: bool = False) -> None:
    """Run a conductor for ``jobs`` jobs; it exits 1 when it trashed one (``trashes``)."""
    result = legato(cwd, "conductor", "--max-dispatches", str(jobs), "--allow",
                    "legato.testing", *extra, ok=False)
    assert result.returncode == (1 if trashes else 0), result.stderr


def short_prefix(uuid: str, others: list[str]) -> str:
    """The shortest prefix of ``uuid`` that no other uuid starts with."""
    for n in itertools.count(1):
        if not any(o.startswith(uuid[:n]) for o in others if o != uuid):
            return uuid[:n]
    raise AssertionError("unreachable")


def shared_prefixes(uuids: list[str]) -> Iterator[str]:
    for a, b in itertools.combinations(uuids, 2):
        if a[0] == b[0]:
            yield a[0]


def test_show_history_and_flow_show_after_consume_and_trash(tmp_path: Path) -> None:
    (done,) = post(tmp_path, tc.steps_flow, kwargs={"steps": 2}, name="done")
    run_conductor(tmp_path, 1)
    (poison,) = post(tmp_path, tc.poison_flow, name="poison")
    run_conductor(tmp_path, 1, "--max-attempts", "1", trashes=True)
    # 17 jobs more: two of the 19 uuids share a first character (16 hex digits).
    waiting = post(tmp_path, tc.steps_flow, 17)
    everyone = [done, poison, *waiting]
    for uuid, state, outcome in ((done, "CONSUMED", "consumed"),
                                 (poison, "TRASHED", "trashed")):
        for ref in (uuid, short_prefix(uuid, POSTED)):
            shown = legato_json(tmp_path, "jobs", "show", ref)
            assert (shown["uuid"], shown["state"], shown["last_outcome"]) == (
                uuid, state, outcome)
            history = legato_json(tmp_path, "jobs", "history", ref)
            assert [c["outcome"] for c in history["claims"]] == [outcome]
            assert history["claims"][0]["fence"] == 1
            flow = legato_json(tmp_path, "flow", "show", ref)
            assert flow["job_uuid"] == uuid and flow["book_uuid"] == shown["book_uuid"]
        book = shown["book_uuid"]
        by_book = legato_json(tmp_path, "flow", "show", short_prefix(book, POSTED))
        assert by_book["book_uuid"] == book
    assert legato_json(tmp_path, "jobs", "history", poison)["claims"][0]["reason"].startswith(
        "too many attempts: ExecutionFailure on ")
    done_history = legato_json(tmp_path, "jobs", "history", done)["claims"]
    assert (done_history[0]["flow_state"], done_history[0]["atoms"]) == (
        "SUCCESS", ["step-0", "step-1"])
    # The timeline for people: one line per claim under a header.
    text = legato(tmp_path, "jobs", "history", done).stdout
    assert "consumed" in text and "SUCCESS" in text and "OUTCOME" in text
    # A prefix matching several jobs: one line naming them.
    prefix = next(shared_prefixes(everyone))
    for command in (["jobs", "show"], ["jobs", "history"], ["flow", "show"]):
        failed = legato(tmp_path, *command, prefix, ok=False)
        assert failed.returncode == 1 and failed.stderr.count("\n") == 1
        assert "ambiguous" in failed.stderr
        assert sum(u in failed.stderr for u in everyone if u.startswith(prefix)) >= 2
    unknown = legato(tmp_path, "jobs", "history", "fffff-no-such", ok=False)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: NotFound")


def test_flows_list_shows_failed_flows_with_their_error(tmp_path: Path) -> None:
    (invalid,) = post(tmp_path, tc.add_flow, name="invalid")  # x and y never given
    (reverted,) = post(tmp_path, tc.failing_flow, name="reverted")
    (ok,) = post(tmp_path, tc.steps_flow, name="ok")
    run_conductor(tmp_path, 3)
    (failure,) = legato_json(tmp_path, "flows", "list", "--state", "FAILURE")
    assert failure["job_uuid"] == invalid and failure["attempts"] == 1
    assert failure["error"].startswith("MissingDependencies")
    (back,) = legato_json(tmp_path, "flows", "list", "--state", "reverted", "--since", "1h")
    assert back["job_uuid"] == reverted and "this task always fails" in back["error"]
    assert [f["job_uuid"] for f in legato_json(tmp_path, "flows", "list", "--state",
                                               "SUCCESS")] == [ok]
    everything = legato_json(tmp_path, "flows", "list", "--factory",
                             "legato.testing.conductor:failing_flow")
    assert [f["job_uuid"] for f in everything] == [reverted]
    text = legato(tmp_path, "flows", "list", "--state", "FAILURE").stdout
    assert "MissingDependencies" in text and invalid in text
    stats = legato_json(tmp_path, "stats")
    assert (stats["finished_1m"], stats["failed_1m"], stats["finished_1h"]) == (3, 2, 3)
    assert (stats["waiting"], stats["claimed"], stats["trashed"]) == (0, 0, 0)
    bad = legato(tmp_path, "flows", "list", "--since", "yesterday", ok=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr
    assert json.loads(legato(tmp_path, "--json", "flows", "list", "--state", "RUNNING")
                      .stdout) == []


def test_post_names_the_job_in_its_logbook(tmp_path: Path) -> None:
    store = json.dumps({"job_name": "j", "log_path": str(tmp_path / "effects.jsonl"),
                        "step_delay": 0})
    posted = legato_json(tmp_path, "post", "legato.demo:demo_flow", "--arg", "1", "--store",
                         store, "--name", "named")
    shown = legato_json(tmp_path, "flow", "show", posted["book_uuid"][:12])
    assert (shown["book_uuid"], shown["job_uuid"]) == (posted["book_uuid"], posted["uuid"])
