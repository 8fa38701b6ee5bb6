"""Browser tests: headless Chromium (Debian's package, ``scripts/chromium.sh``) driven by
Selenium through /usr/bin/chromedriver. Missing locally: skipped with the reason; under
``CI=true``: a failure. Each test saves a screenshot when it fails."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
#: The README's picture of the job page. A browser run writes it to ``SCREENSHOTS``; with
#: ``LEGATO_UPDATE_SCREENSHOTS=1`` it replaces the one in docs/ instead.
JOB_SCREENSHOT = "dashboard-job.png"


@pytest.fixture
def job_screenshot() -> Path:
    """Where a test saves the README's screenshot of the job page: build/screenshots/, or
    docs/ with ``LEGATO_UPDATE_SCREENSHOTS=1`` (so a plain run never changes the repository)."""
    if os.environ.get("LEGATO_UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / JOB_SCREENSHOT
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / JOB_SCREENSHOT


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium; on a failed test its screen goes to build/screenshots/."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        missing.append(f"selenium ({exc})")
    if missing:
        reason = f"browser tests need {', '.join(missing)} (run scripts/chromium.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        if request.node.stash.get(_FAILED, False):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-120:]
            driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        driver.quit()
