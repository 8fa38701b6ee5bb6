"""The board going down while a page is open: the page shows the banner without a reload,
and recovers by itself when the board answers again (the board behind ``TCPProxy``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from legato import jobboard, persistence
from legato.dashboard.app import create_app
from legato.testing.conductor import post_job, steps_flow
from legato.testing.dashboard import running
from legato.testing.proxy import TCPProxy

WAIT = 60.0
#: Board options so a cut connection fails fast instead of waiting on a socket.
OPTIONS = {
    "redis": {"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
    "postgresql": {},
    "zookeeper": {},
}


def _wait(driver: Any, predicate: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(predicate)


def _banner(driver: Any) -> tuple[bool, str]:
    shown, text = driver.execute_script(
        "const b = document.getElementById('banner'); return [!b.hidden, b.textContent];"
    )
    return bool(shown), str(text)


def _count(driver: Any, key: str) -> str:
    return str(driver.execute_script(f"return document.getElementById('count-{key}').textContent;"))


@pytest.mark.parametrize("kind", ["redis_url", "postgres_url", "zookeeper_url"])
def test_the_open_page_shows_the_banner_and_recovers(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, browser: Any
) -> None:
    board_url: str = request.getfixturevalue(kind)
    store = persistence.connect(f"sqlite:///{tmp_path / 'flows.db'}")
    store.upgrade()
    options = OPTIONS[board_url.split(":", 1)[0].split("+", 1)[0]]
    with (
        TCPProxy.for_url(board_url) as proxy,
        jobboard.connect(proxy.url_for(board_url), persistence=store, **options) as board,
        running(create_app(board, store, refresh=0.3)) as url,
    ):
        post_job(board, store, steps_flow, name="before")
        browser.get(f"{url}/")
        _wait(browser, lambda d: _count(d, "waiting") == "1")
        browser.execute_script("window.legatoNoReload = true;")
        assert _banner(browser) == (False, "")
        proxy.cut()
        _wait(browser, lambda d: _banner(d)[0])
        assert "Unavailable (503)" in _banner(browser)[1]
        proxy.restore()
        _wait(browser, lambda d: not _banner(d)[0])
        post_job(board, store, steps_flow, name="after")
        _wait(browser, lambda d: _count(d, "waiting") == "2")  # live again, same page
        assert browser.execute_script("return window.legatoNoReload === true;")
    store.close()
