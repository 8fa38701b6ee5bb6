"""What the dashboard finds without reading the whole board: the oldest waiting job whatever
its priority, pages of the jobs list that start after a job's position, and the jobs every
conductor holds (from the board's index of claims)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from legato.dashboard import _data  # noqa: E402
from legato.dashboard.app import create_app  # noqa: E402
from legato.jobboard.base import Entity  # noqa: E402
from legato.jobboard.sql.board import SQLJobBoard  # noqa: E402
from legato.testing.dashboard import running  # noqa: E402


@pytest.fixture
def web(stack: Any) -> Iterator[Any]:
    board, store = stack
    with (
        running(create_app(board, store)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def test_the_oldest_waiting_job_is_found_whatever_its_priority(stack: Any, web: Any) -> None:
    board, _ = stack
    assert web.get("/api/stats").json()["oldest_waiting"] is None
    old = board.post("old-and-low", priority="very_low")
    board.post("new-and-high", priority="very_high")
    stats = web.get("/api/stats").json()
    assert stats["oldest_waiting"] == old.uuid
    assert stats["oldest_waiting_since"] == old.created_on.isoformat()
    assert f'href="/jobs/{old.uuid}" id="oldest-waiting"' in web.get("/").text


def test_jobs_pages_follow_the_position_of_the_last_job(stack: Any, web: Any) -> None:
    board, _ = stack
    posted = [board.post(f"alpha-{i}") for i in range(5)]
    board.post("beta")
    first = web.get("/api/jobs?name=alpha&limit=2").json()
    assert [j["name"] for j in first["jobs"]] == ["alpha-0", "alpha-1"]
    assert first["next_after"] == posted[1].position
    rest = web.get("/api/jobs", params={"name": "alpha", "after": first["next_after"]}).json()
    assert [j["name"] for j in rest["jobs"]] == ["alpha-2", "alpha-3", "alpha-4"]
    assert rest["next_after"] is None and rest["next_start"] is None
    page = web.get("/jobs?limit=2").text
    assert f'after={posted[1].position.replace(":", "%3A")}&amp;limit=2">next page' in page
    deep = web.get(f"/jobs?after={posted[3].position}").text
    assert ">alpha-4<" in deep and ">alpha-3<" not in deep and ">first page</a>" in deep


def test_a_deep_page_reads_only_its_own_jobs(stack: Any, web: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    board, _ = stack
    assert isinstance(board, SQLJobBoard)
    posted = [board.post(f"job-{i}") for i in range(60)]
    decoded: list[str] = []
    real = SQLJobBoard._decode

    def counting(row: Any) -> Any:
        decoded.append(row.uuid)
        return real(row)

    monkeypatch.setattr(SQLJobBoard, "_decode", staticmethod(counting))
    page = web.get(f"/api/jobs?after={posted[49].position}&limit=5").json()
    assert [j["uuid"] for j in page["jobs"]] == [j.uuid for j in posted[50:55]]
    assert posted[0].uuid not in decoded and len(decoded) <= 20  # one first page of rows


def test_bad_positions_are_one_clear_line(web: Any) -> None:
    answer = web.get("/api/jobs?after=yesterday")
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("not a job position: 'yesterday'")
    assert web.get("/api/jobs?state=trashed&after=0:1").status_code == 400


def test_conductors_show_every_job_they_hold_however_deep(
    stack: Any, web: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    board, _ = stack
    monkeypatch.setattr(_data, "HEAD_SCAN", 2)  # a claim beyond the head is found all the same
    board.register_entity(Entity("conductor", "conductor-a"), ttl=3600)
    jobs = [board.post(f"job-{i}") for i in range(6)]
    board.claim(jobs[5], "conductor-a")
    for path in ("/api/stats", "/api/conductors"):
        data = web.get(path).json()
        rows = data["conductors"] if path == "/api/stats" else data["live"]
        assert [(r["name"], r["jobs"]) for r in rows] == [("conductor-a", [jobs[5].uuid])]
