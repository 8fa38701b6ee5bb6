"""Operating a conductor: Prometheus metrics scraped over HTTP, JSON logs, traces."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]
BOARDS = ["sqlite_url", "postgres_url", "redis_url", "zookeeper_url"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGATO_", "OTEL_"))}
    env.update(extra)
    return env


def legato(cwd: Path, *args: str, ok: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True,
                            env=env or _env(), timeout=60, check=False)
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def post_demo(cwd: Path, *extra: str, name: str, env: dict[str, str], steps: int = 2,
              delay: float = 0.0) -> str:
    store = json.dumps({"job_name": name, "log_path": str(cwd / "effects.jsonl"),
                        "step_delay": delay})
    return legato(cwd, "post", "legato.demo:demo_flow", "--store", store, "--name", name,
                  "--arg", str(steps), *extra, env=env).stdout.strip()


def _read_event(proc: subprocess.Popen[str], wanted: str, timeout: float = 30) -> dict[str, Any]:
    """The next event ``wanted`` the conductor prints (``--json``) on stdout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        event: dict[str, Any] = json.loads(line)
        if event["event"] == wanted:
            return event
    raise AssertionError(f"no {wanted!r} event within {timeout}s")


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _gauges(page: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {state: page[("legato_conductor_board_jobs", (("state", state),))]
            for state in ("waiting", "delayed", "claimed", "trashed")}


def _until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _board_env(request: pytest.FixtureRequest, fixture: str, tmp_path: Path) -> dict[str, str]:
    url = request.getfixturevalue(fixture)
    return _env(LEGATO_BOARD=url, LEGATO_PERSISTENCE=f"sqlite:///{tmp_path / 'flows.db'}")


@pytest.mark.parametrize("board", BOARDS)
def test_metrics_scraped_from_a_running_conductor_move_as_jobs_run(
        tmp_path: Path, request: pytest.FixtureRequest, board: str) -> None:
    env = _board_env(request, board, tmp_path)
    with subprocess.Popen([*LEGATO, "--json", "conductor", "--allow", "legato.demo",
                           "--metrics-port", "0", "--metrics-host", "127.0.0.1"],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            url = _read_event(proc, "started")["metrics"]
            assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
            first = _scrape(url)
            consumed = ("legato_conductor_jobs_total", (("outcome", "consumed"),))
            assert first[consumed] == 0
            assert first[("legato_conductor_board_up", ())] == 1

            post = lambda name, *extra: post_demo(  # noqa: E731
                tmp_path, *extra, name=name, steps=2, env=env)
            post("a")
            post("b")
            post("later", "--delay", "3600")
            _until(lambda: _scrape(url)[consumed] == 2)
            post("c")
            _until(lambda: _scrape(url)[consumed] == 3)
            # Board gauges are re-read at most every few seconds: wait for the new counts.
            _until(lambda: _gauges(_scrape(url)) == {"waiting": 0, "delayed": 1,
                                                     "claimed": 0, "trashed": 0})
            page = _scrape(url)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert page[("legato_conductor_claims_total", ())] == 3
    assert page[("legato_conductor_claim_seconds_count", ())] >= 1
    assert page[("legato_conductor_job_duration_seconds_count", ())] == 3
    assert page[("legato_conductor_atom_duration_seconds_count", (("state", "SUCCESS"),))] == 6
    assert page[("legato_conductor_jobs_in_flight", ())] == 0
    assert page[("legato_conductor_claims_lost_total", ())] == 0
    assert page[("legato_conductor_board_errors_total", ())] == 0
    assert page[("legato_conductor_storage_errors_total", ())] == 0


def test_metrics_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = legato(tmp_path, "conductor", "--metrics-port", str(port), "--metrics-host",
                        "127.0.0.1", ok=False)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("board", ["sqlite_url", "redis_url"])
def test_log_format_json_writes_every_event_and_log_line_as_one_object(
        tmp_path: Path, request: pytest.FixtureRequest, board: str) -> None:
    from legato import jobboard

    env = _board_env(request, board, tmp_path)
    good = post_demo(tmp_path, name="good", env=env)
    with jobboard.connect(env["LEGATO_BOARD"]) as posted_on:
        bad = posted_on.post("bad", details={"store": "not an object"}).uuid
    result = legato(tmp_path, "conductor", "--name", "w", "--allow", "legato.demo",
                    "--max-dispatches", "2", "--log-format", "json", env=env, ok=False)
    assert result.stdout == ""
    *logged, last = result.stderr.splitlines()
    # The run's exit status line (a job was trashed) is the CLI's one error line, as always.
    assert result.returncode == 1 and last.startswith("error: JobsTrashed: 1 of 2 ")
    lines = [json.loads(line) for line in logged]
    assert lines, result.stderr
    for line in lines:
        assert line["time"].endswith("+00:00") and line["conductor"].startswith("w")
    events = {line["event"]: line for line in lines if line.get("event")}
    assert set(events) >= {"started", "running_start", "job_consumed", "job_trashed", "stopped"}
    name = events["started"]["conductor"]
    assert name.startswith("w@") and events["stopped"]["conductor"] == name
    for event in ("started", "stopped"):
        assert {k: events[event][k] for k in ("job", "attempt", "fence", "outcome")} == \
            dict.fromkeys(("job", "attempt", "fence", "outcome"))
    consumed, trashed = events["job_consumed"], events["job_trashed"]
    assert (consumed["job"], consumed["job_name"], consumed["outcome"]) == (good, "good",
                                                                            "consumed")
    assert consumed["attempt"] == 1 and isinstance(consumed["fence"], int)
    assert consumed["reason"] is None and consumed["conductor"] == name
    assert (trashed["job"], trashed["outcome"], trashed["attempt"]) == (bad, "trashed", 1)
    assert "malformed details" in trashed["reason"]


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("board", BOARDS)
def test_one_trace_from_post_through_a_takeover_to_the_end(
        tmp_path: Path, request: pytest.FixtureRequest, board: str) -> None:
    """The producer's trace (in-memory exporter, this process) continues in the conductor
    that claims the job (spans written by ``--trace-file``), and in the one that takes it
    over after the first was SIGKILLed mid-flow."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from legato import jobboard
    from legato import persistence as lp
    from legato.demo import demo_flow
    from legato.testing import conductor as tc

    env = _board_env(request, board, tmp_path)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    effects = tmp_path / "effects.jsonl"
    with lp.connect(env["LEGATO_PERSISTENCE"]) as store, \
            jobboard.connect(env["LEGATO_BOARD"], persistence=store) as posted_on, \
            provider.get_tracer("producer").start_as_current_span("produce") as produce:
        store.upgrade()
        job = tc.post_job(posted_on, store, demo_flow, args=(6,), name="traced", store={
            "job_name": "traced", "log_path": str(effects), "step_delay": 0.3})
    [produced] = exporter.get_finished_spans()
    trace_id = f"0x{produce.get_span_context().trace_id:032x}"
    produce_id = f"0x{produce.get_span_context().span_id:016x}"

    command = [*LEGATO, "conductor", "--allow", "legato.demo", "--ttl", "2"]
    first_file, second_file = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    with subprocess.Popen([*command, "--trace-file", str(first_file)], cwd=tmp_path, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as first:
        try:
            _until(lambda: len([s for s in _spans(first_file) if s["name"] == "legato.atom"])
                   >= 2)
        finally:
            first.kill()
            first.wait(timeout=30)
    second = legato(tmp_path, *command[len(LEGATO):], "--max-dispatches", "1", "--trace-file",
                    str(second_file), env=env)
    assert second.returncode == 0

    before, after = _spans(first_file), _spans(second_file)
    assert {span["context"]["trace_id"] for span in before + after} == {trace_id}
    assert produced.context.trace_id == produce.get_span_context().trace_id
    # The first conductor never finished its run: only its claim and some atoms were written.
    assert {span["name"] for span in before} == {"legato.claim", "legato.atom"}
    [run] = [span for span in after if span["name"] == "legato.job"]
    assert run["parent_id"] == produce_id
    attributes = run["attributes"]
    assert (attributes["legato.job.id"], attributes["legato.job.attempt"]) == (job.uuid, 2)
    assert attributes["legato.job.outcome"] == "consumed"
    [first_claim] = [span for span in before if span["name"] == "legato.claim"]
    assert first_claim["attributes"]["legato.conductor"] != attributes["legato.conductor"]
    assert first_claim["attributes"]["legato.job.fence"] < attributes["legato.job.fence"]
    children = sorted(span["name"] for span in after
                      if span["parent_id"] == run["context"]["span_id"])
    assert children[-2:] == ["legato.board.consume", "legato.claim"]
    steps = {span["attributes"]["legato.atom.name"] for span in before + after
             if span["name"] == "legato.atom"}
    assert steps == {f"step-{i}" for i in range(1, 7)}


def test_unknown_log_format_is_one_clear_line(tmp_path: Path) -> None:
    result = legato(tmp_path, "conductor", "--log-format", "xml", ok=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: StartupError: --log-format must be text or json, not 'xml'\n"


def test_post_carries_the_trace_context_of_its_environment(tmp_path: Path) -> None:
    """A traced shell script hands ``legato post`` its context in TRACEPARENT; the conductor's
    ``legato.job`` span is its child, in its trace."""
    pytest.importorskip("opentelemetry.sdk")
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = _env(LEGATO_BOARD=f"sqlite:///{tmp_path / 'board.db'}",
               LEGATO_PERSISTENCE=f"sqlite:///{tmp_path / 'flows.db'}")
    post_demo(tmp_path, name="traced", steps=1,
              env={**env, "TRACEPARENT": f"00-{trace_id}-{parent_id}-01",
                   "TRACESTATE": "vendor=1"})
    spans_file = tmp_path / "spans.jsonl"
    legato(tmp_path, "conductor", "--allow", "legato.demo", "--max-dispatches", "1",
           "--trace-file", str(spans_file), env=env)
    [run] = [span for span in _spans(spans_file) if span["name"] == "legato.job"]
    assert run["context"]["trace_id"] == f"0x{trace_id}"
    assert run["parent_id"] == f"0x{parent_id}"


def test_a_malformed_traceparent_is_one_warning_and_the_job_is_posted(tmp_path: Path) -> None:
    env = _env(LEGATO_BOARD=f"sqlite:///{tmp_path / 'board.db'}",
               LEGATO_PERSISTENCE=f"sqlite:///{tmp_path / 'flows.db'}")
    store = json.dumps({"job_name": "x", "log_path": str(tmp_path / "e.jsonl")})
    posted = legato(tmp_path, "post", "legato.demo:demo_flow", "--store", store, "--arg", "1",
                    env={**env, "TRACEPARENT": "00-not-a-trace-01"})
    assert "TRACEPARENT is not a W3C traceparent" in posted.stderr
    assert "Traceback" not in posted.stderr and len(posted.stderr.strip().splitlines()) == 1
    shown = json.loads(legato(tmp_path, "jobs", "show", posted.stdout.strip(), "--json",
                              env=env).stdout)
    assert shown["details"]["store"]["job_name"] == "x" and "trace" not in shown["details"]
