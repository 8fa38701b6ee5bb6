"""The overview flags a live claim with less than a third of its lease left (its conductor
renews with two thirds left, so it missed renewals), and no longer once it is renewed; a
lapsed claim shows as lapsed instead. Time is a fake clock the board reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from legato import jobboard, persistence  # noqa: E402
from legato.dashboard.app import create_app  # noqa: E402
from legato.jobboard.base import Entity  # noqa: E402
from legato.testing.clock import FakeClock  # noqa: E402
from legato.testing.dashboard import running  # noqa: E402


@pytest.fixture
def stack(sqlite_url: str) -> Iterator[tuple[Any, Any, FakeClock]]:
    clock = FakeClock()
    store = persistence.connect(sqlite_url)
    store.upgrade()
    with jobboard.connect(sqlite_url, persistence=store, clock=clock) as board:
        yield board, store, clock
    store.close()


def test_a_claim_about_to_lapse_needs_attention_until_renewed(stack: Any) -> None:
    board, store, clock = stack
    stuck = board.claim(board.post("stuck-job"), "conductor-a", ttl=30)
    healthy = board.claim(board.post("healthy-job"), "conductor-b", ttl=30)
    with (
        running(create_app(board, store)) as url,
        httpx.Client(base_url=url, timeout=30) as web,
    ):

        def lapsing() -> list[str]:
            return [c["job_name"] for c in web.get("/api/stats").json()["lapsing"]]

        clock.advance(15)  # half the lease left: not yet
        assert lapsing() == []
        board.renew(healthy, "conductor-b", ttl=30)
        clock.advance(6)  # 9s of 30 left for the stuck one; 24s for the renewed one
        stats = web.get("/api/stats").json()
        assert [(c["job_name"], c["owner"], c["left"]) for c in stats["lapsing"]] == [
            ("stuck-job", "conductor-a", 9.0)
        ]
        assert stats["lapsed"] == []
        assert any("about to lapse" in line and "stuck-job" in line for line in stats["attention"])
        page = web.get("/").text
        assert "about to lapse" in page and "stuck-job held by conductor-a" in page
        board.renew(stuck, "conductor-a", ttl=30)
        assert lapsing() == []
        clock.advance(31)  # neither renewed again: both lapsed, none about to
        stats = web.get("/api/stats").json()
        assert stats["lapsing"] == []
        assert sorted(stats["lapsed"]) == sorted([stuck.uuid, healthy.uuid])
        assert not any("about to lapse" in line for line in stats["attention"])


def test_each_live_conductor_shows_its_last_renewal(stack: Any) -> None:
    board, store, clock = stack
    board.register_entity(Entity("conductor", "conductor-a"), ttl=3600)
    board.register_entity(Entity("conductor", "idle"), ttl=3600)
    held = board.claim(board.post("held-job"), "conductor-a", ttl=30)
    with (
        running(create_app(board, store)) as url,
        httpx.Client(base_url=url, timeout=30) as web,
    ):

        def rows() -> dict[str, dict[str, Any]]:
            return {c["name"]: c for c in web.get("/api/stats").json()["conductors"]}

        clock.advance(8)
        assert (rows()["conductor-a"]["last_renewal_age"], rows()["idle"]["last_renewal"]) == (
            "8s",
            None,
        )
        board.renew(held, "conductor-a", ttl=30)
        clock.advance(2)
        assert rows()["conductor-a"]["last_renewal_age"] == "2s"
        assert rows()["conductor-a"]["jobs"] == [held.uuid]
        assert "2s ago" in web.get("/").text and "2s ago" in web.get("/conductors").text
