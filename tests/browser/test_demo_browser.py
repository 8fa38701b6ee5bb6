"""``legato demo --dashboard`` in a real browser: the job whose conductor the demo kills shows
the takeover in its claim timeline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")

from legato.testing.conductor import next_line

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]
WAIT = 60.0


def _wait(driver: Any, predicate: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(predicate)


def _column(driver: Any, css: str) -> list[str]:
    script = f"return Array.from(document.querySelectorAll({css!r}), e => e.textContent);"
    return list(driver.execute_script(script) or [])


def test_the_demo_takeover_appears_in_the_killed_jobs_timeline(
    tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    command = [
        *LEGATO,
        "demo",
        "--jobs",
        "3",
        "--conductors",
        "2",
        "--steps",
        "5",
        "--step-delay",
        "0.5",
        "--ttl",
        "2",
        "--dashboard",
        "--dashboard-linger",
        "300",
    ]
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            line = next_line(
                proc.stdout, lambda text: "dashboard on http://" in text, WAIT, "no dashboard URL"
            )
            url = line.split("dashboard on ", 1)[1].split()[0].rstrip("/")
            browser.get(f"{url}/")
            killed = next_line(
                proc.stdout,
                lambda text: "with SIGKILL while it held" in text,
                WAIT,
                "the demo killed no conductor",
            )
            found = re.search(r"killed (\S+) .* held (demo-job-\d+)", killed)
            assert found is not None, killed
            victim, job_name = found.groups()
            browser.get(f"{url}/flows")
            link = browser.find_element(
                By.XPATH, f"//tr[td[2][text()='{job_name}']]//a[starts-with(@href, '/jobs/')]"
            )
            link.click()
            _wait(browser, lambda d: d.find_element(By.ID, "job-name").text == job_name)
            browser.execute_script("window.legatoNoReload = true;")
            # The page stays loaded while the takeover and the end of the job arrive.
            _wait(
                browser, lambda d: _column(d, "#timeline td.outcome") == ["lost claim", "consumed"]
            )
            owners = _column(browser, "#timeline td.owner")
            assert owners[0].startswith(f"{victim}@")
            assert not owners[1].startswith(f"{victim}@")
            assert browser.execute_script("return window.legatoNoReload === true;")
            states = browser.execute_script(
                "return Array.from(document.querySelectorAll('li.atom'), li => li.dataset.state);"
            )
            assert states == ["SUCCESS"] * 5
            next_line(proc.stdout, lambda text: "stays up" in text, WAIT, "the demo failed")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
