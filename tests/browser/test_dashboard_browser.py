"""The dashboard in a real browser, with real conductor processes, on every board: watch a
job's atoms change live (no reload), kill its conductor and see the takeover in the
timeline, cancel a running job, requeue it from the trash, post jobs and filter the list."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from legato import jobboard, persistence
from legato.dashboard import parse_token
from legato.dashboard.app import create_app
from legato.testing import conductor as tc
from legato.testing.dashboard import running

SECRET = "browser-test-token-1234"
TTL = 2.0
WAIT = 60.0


@pytest.fixture(params=["sqlite", "postgres", "redis", "zookeeper"])
def board_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def board_kind(board_url: str) -> str:
    return board_url.split(":", 1)[0]


@pytest.fixture
def site(board_url: str, board_kind: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A dashboard (actions allowed) over ``board_url`` with SQLite persistence, and a way to
    start conductor processes on them."""
    persistence_url = f"sqlite:///{tmp_path / 'flows.db'}"
    store = persistence.connect(persistence_url)
    store.upgrade()
    procs: list[subprocess.Popen[bytes]] = []

    def conductor(name: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "legato.testing.conductor",
                board_url,
                persistence_url,
                "--ttl",
                str(TTL),
                "--name",
                name,
                "--timing",
            ],
            stdout=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    with jobboard.connect(board_url, persistence=store) as board:
        app = create_app(
            board,
            store,
            allow_actions=True,
            token=parse_token(SECRET),
            refresh=0.3,
            label=f"board {board_url}",
        )
        with running(app) as url:
            try:
                yield {
                    "url": url,
                    "board": board,
                    "store": store,
                    "conductor": conductor,
                    "log": tmp_path / "side-effects.log",
                    "kind": board_kind,
                }
            finally:
                for proc in procs:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait()
    store.close()


def _wait(driver: Any, predicate: Any, timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)


def _text(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _atom_states(driver: Any) -> list[str]:
    states = driver.execute_script(
        "return Array.from(document.querySelectorAll('li.atom'), li => li.dataset.state);"
    )
    return list(states or [])


def _owners(driver: Any) -> list[str]:
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll('#timeline td.owner'),"
            " td => td.textContent);"
        )
        or []
    )


def _login(driver: Any, url: str, then: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/login?next={then}")
    driver.find_element(By.ID, "token").send_keys(SECRET)
    driver.find_element(By.ID, "login").click()
    _wait(driver, lambda d: "logged in" in _text(d, "#notice"))


def _post_slow(site: dict[str, Any], name: str, steps: int = 5, pause: float = 0.6) -> Any:
    label = f"{name}-{uuid.uuid4().hex[:6]}"
    return tc.post_job(
        site["board"],
        site["store"],
        tc.side_effect_flow,
        name=name,
        kwargs={"steps": steps, "label": label, "log_path": str(site["log"]), "pause": pause},
    )


def test_live_atoms_and_takeover(site: dict[str, Any], browser: Any, job_screenshot: Path) -> None:
    job = _post_slow(site, "takeover-demo")
    doomed = site["conductor"]("doomed")
    browser.get(f"{site['url']}/jobs/{job.uuid}")
    browser.execute_script("window.legatoNoReload = true;")
    # Atoms appear and turn SUCCESS one by one while the page stays loaded.
    _wait(browser, lambda d: _atom_states(d).count("SUCCESS") >= 1)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    site["conductor"]("survivor")
    _wait(browser, lambda d: _text(d, "#job-state") == "consumed")
    _wait(browser, lambda d: len(_owners(d)) == 2)
    owners = _owners(browser)
    assert owners[0].startswith("doomed@") and owners[1].startswith("survivor@")
    outcomes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#timeline td.outcome'),"
        " td => td.textContent);"
    )
    assert outcomes == ["lost claim", "consumed"]
    assert _atom_states(browser) == ["SUCCESS"] * 5
    assert browser.execute_script("return window.legatoNoReload === true;")
    # Atoms show how long they ran (the conductors record it, as legato conductor does). A
    # duration is written in its own commit after the step's result, so the step the killed
    # conductor finished last may have none: at least the other four have one.
    from selenium.webdriver.common.by import By

    assert len(browser.find_elements(By.CSS_SELECTOR, ".atom .duration:not(.none)")) >= 4
    if site["kind"] == "sqlite":  # the README's picture comes from this run
        browser.save_screenshot(str(job_screenshot))


def test_cancel_running_job_then_requeue_from_trash(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    job = _post_slow(site, "to-cancel", steps=30, pause=0.3)
    site["conductor"]("worker")
    _login(browser, site["url"], f"/jobs/{job.uuid}")
    _wait(browser, lambda d: _text(d, "#job-state") == "claimed")
    browser.find_element(By.NAME, "reason").send_keys("not needed")
    browser.find_element(By.ID, "cancel").click()
    _wait(browser, lambda d: "cancel requested" in _text(d, "#notice"))
    _wait(browser, lambda d: _text(d, "#job-state") == "trashed")
    assert "not needed" in _text(browser, "#job-reason")
    assert "cancelled by alice" not in _text(browser, "#job-reason")  # the token is unnamed
    assert "operator@dashboard" in _text(browser, "#job-reason")
    browser.get(f"{site['url']}/trash")
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-uuid='{job.uuid}']")
    row.find_element(By.CSS_SELECTOR, "button.requeue-one").click()
    _wait(browser, lambda d: "requeued" in _text(d, "#notice"))
    new_uuid = browser.current_url.rsplit("/", 1)[-1].split("?")[0]
    assert new_uuid != job.uuid
    assert site["board"].get(new_uuid).name == "to-cancel"
    assert site["board"].counts()["trashed"] == 0


def test_post_jobs_and_filter_the_list(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _login(browser, site["url"], "/jobs")
    for name in ("alpha-one", "beta-two", "alpha-three"):
        browser.get(f"{site['url']}/jobs")
        browser.find_element(By.CSS_SELECTOR, "details.post summary").click()
        Select(browser.find_element(By.ID, "post-factory")).select_by_visible_text(
            "legato.testing.conductor:steps_flow"
        )
        browser.find_element(By.ID, "post-name").send_keys(name)
        browser.find_element(By.ID, "post").click()
        _wait(browser, lambda d, n=name: _text(d, "#job-name") == n)
    browser.get(f"{site['url']}/jobs")
    browser.find_element(By.ID, "filter-name").send_keys("alpha")
    browser.find_element(By.ID, "filter").click()
    _wait(browser, lambda d: "name=alpha" in d.current_url)
    _wait(browser, lambda d: _names(d) == ["alpha-one", "alpha-three"])
    Select(browser.find_element(By.ID, "filter-state")).select_by_visible_text("claimed")
    browser.find_element(By.ID, "filter").click()
    _wait(browser, lambda d: "state=claimed" in d.current_url)
    assert _names(browser) == []
    assert "no jobs" in _text(browser, "#jobs-table")


def _names(driver: Any) -> list[str]:
    names = driver.execute_script(
        "return Array.from(document.querySelectorAll('#jobs-table td.name'), td => td.textContent);"
    )
    return sorted(names or [])
