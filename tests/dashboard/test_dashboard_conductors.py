"""A conductor that pauses itself because it looks misconfigured shows as paused on the
dashboard (``/api/conductors``, the overview's attention list), and stops showing so once it
claims again and its jobs run."""

from __future__ import annotations

import pathlib
import threading
import uuid
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from legato.conductor import BlockingConductor  # noqa: E402
from legato.dashboard.app import create_app  # noqa: E402
from legato.jobboard.base import JobBoard  # noqa: E402
from legato.persistence.base import Persistence  # noqa: E402
from legato.persistence.models import FlowDetail, LogBook  # noqa: E402
from legato.testing.conductor import wait_until  # noqa: E402
from legato.testing.dashboard import running  # noqa: E402

MODULE_TEXT = """
import legato
from legato.testing.conductor import steps_flow


@legato.flow_factory
def make():
    return steps_flow(1)
"""


def _post_by_name(board: JobBoard, store: Persistence, factory: str) -> None:
    """Post a job whose flow detail names ``factory``, without importing it."""
    book = LogBook("job")
    detail = FlowDetail("job")
    detail.meta["factory"] = {"name": factory, "args": [], "kwargs": {}}
    book.add(detail)
    store.save_logbook(book)
    board.post("job", book=store.get_logbook(book.uuid))


def _paused(web: Any) -> list[dict[str, Any]]:
    return [c for c in web.get("/api/conductors").json()["live"] if c["paused"]]


def test_a_misconfigured_conductor_shows_paused_then_claiming(
    stack: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    board, store = stack
    module = f"legato_dash_pause_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(MODULE_TEXT)  # not importable: not on sys.path
    for _ in range(4):
        _post_by_name(board, store, f"{module}:make")
    bad = BlockingConductor(
        "bad",
        board,
        store,
        wait_timeout=0.05,
        backoff_base=0.01,
        backoff_max=0.01,
        pause_after=3,
        pause_for=2.0,
        allowed_factories=[module],
    )
    thread = threading.Thread(target=bad.run, daemon=True)
    thread.start()
    try:
        with (
            running(create_app(board, store)) as url,
            httpx.Client(base_url=url, timeout=30) as web,
        ):
            wait_until(lambda: bool(_paused(web)), timeout=30)
            (row,) = _paused(web)
            assert row["name"] == bad.conductor.name
            assert row["paused"]["jobs"] == 3
            assert "factory not found" in row["paused"]["reason"]
            assert row["paused"]["until"]
            attention = web.get("/api/stats").json()["attention"]
            assert any("paused itself" in line and "misconfigured" in line for line in attention)
            assert "paused until" in web.get("/conductors").text
            assert "paused itself" in web.get("/").text
            # Fixed while it waits: it claims again, runs the jobs, and no longer shows paused.
            monkeypatch.syspath_prepend(str(tmp_path))
            wait_until(lambda: board.job_count == 0, timeout=60)
            wait_until(lambda: not _paused(web), timeout=30)
            (live,) = web.get("/api/conductors").json()["live"]
            assert live["paused"] is None
            assert not any("paused" in line for line in web.get("/api/stats").json()["attention"])
    finally:
        bad.stop()
        assert bad.wait(30)
