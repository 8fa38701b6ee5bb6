"""Persistence going down (PostgreSQL behind the TCP proxy in ``legato.testing``, cut) gives
503 pages and API answers the open page shows as a banner; they recover on their own once it
returns, on the same dashboard."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from legato import jobboard, persistence  # noqa: E402
from legato.dashboard.app import create_app  # noqa: E402
from legato.testing.conductor import post_job, steps_flow, wait_until  # noqa: E402
from legato.testing.dashboard import running  # noqa: E402
from legato.testing.proxy import TCPProxy  # noqa: E402


def test_persistence_down_is_a_banner_and_recovers(postgres_url: str, sqlite_url: str) -> None:
    with TCPProxy.for_url(postgres_url) as proxy:
        store = persistence.connect(proxy.url_for(postgres_url))
        store.upgrade()
        with (
            jobboard.connect(sqlite_url, persistence=store) as board,
            running(create_app(board, store)) as url,
            httpx.Client(base_url=url, timeout=60) as web,
        ):
            job = post_job(board, store, steps_flow, name="survivor")
            assert web.get(f"/jobs/{job.uuid}").status_code == 200
            proxy.cut()
            down: Any = web.get(f"/jobs/{job.uuid}?part=live")
            assert down.status_code == 503 and "unavailable" in down.text
            assert web.get("/api/stats").status_code == 503
            page = web.get("/flows")
            assert page.status_code == 503 and "data-recover" in page.text
            assert "survivor" not in page.text
            proxy.restore()
            wait_until(lambda: web.get("/api/stats").status_code == 200, timeout=30)
            assert "survivor" in web.get(f"/jobs/{job.uuid}").text
        store.close()
