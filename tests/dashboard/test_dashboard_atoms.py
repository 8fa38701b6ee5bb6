"""The job page shows each atom's state, result, failure with its traceback, how long it ran
(what the engine's ``TimingListener`` recorded; nothing when it recorded nothing) and a
retry's history try by try; large values are folded, store values one by one."""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from legato import engine  # noqa: E402
from legato.dashboard import _data  # noqa: E402
from legato.dashboard.app import create_app  # noqa: E402
from legato.engine.listeners import TimingListener  # noqa: E402
from legato.flow import LinearFlow, Task  # noqa: E402
from legato.flow.retry import Times  # noqa: E402
from legato.jobboard.base import JobBoard  # noqa: E402
from legato.persistence.base import Persistence  # noqa: E402
from legato.persistence.models import FlowDetail, LogBook  # noqa: E402
from legato.testing.dashboard import running  # noqa: E402


class Flaky(Task):
    """Fails its first call, then returns a large value."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls = itertools.count()

    def execute(self) -> dict[str, str]:
        if next(self.calls) == 0:
            raise RuntimeError("first <try> fails")
        return {f"key-{i}": "x" * 40 for i in range(20)}


class Broken(Task):
    def execute(self) -> None:
        raise ValueError("always <b>broken</b>")


def _run(
    board: JobBoard, store: Persistence, flow: Any, *, timed: bool, details: dict[str, Any]
) -> str:
    """Post a job for ``flow`` and run the flow into its book; the job's uuid."""
    book = LogBook(flow.name)
    detail = FlowDetail(flow.name)
    book.add(detail)
    store.save_logbook(book)
    job = board.post(flow.name, book, {"flow_uuid": detail.uuid, **details})
    run = engine.load(flow, persistence=store, flow_detail=store.get_flow_details(detail.uuid))
    with contextlib.ExitStack() as timing, contextlib.suppress(ValueError):
        if timed:
            timing.enter_context(TimingListener(run))
        run.run()
    return job.uuid


def test_atoms_show_state_result_failure_duration_and_retry_history(stack: Any) -> None:
    board, store = stack
    big = {"blob": "y" * (_data.FOLD_CHARS + 100)}
    retried = _run(
        board,
        store,
        LinearFlow("retried", retry=Times(3, name="again")).add(Flaky("flaky")),
        timed=True,
        details={"store": {"small": 7, "big": big}},
    )
    broken = _run(board, store, LinearFlow("broken").add(Broken("broken")), timed=False, details={})
    with (
        running(create_app(board, store)) as url,
        httpx.Client(base_url=url, timeout=30) as web,
    ):
        api = web.get(f"/api/jobs/{retried}").json()
        atoms = {a["name"]: a for a in api["flows"][0]["atoms"]}
        assert atoms["flaky"]["state"] == "SUCCESS" and atoms["again"]["state"] == "SUCCESS"
        assert atoms["flaky"]["duration"] is not None and atoms["flaky"]["duration"] >= 0
        history = atoms["again"]["retry_history"]
        assert [t["try"] for t in history] == [1, 2]
        [failed] = history[0]["failures"]
        assert failed["atom"] == "flaky" and failed["type"] == "builtins.RuntimeError"
        assert "Traceback" in failed["traceback"] and history[1]["failures"] == []

        page = web.get(f"/jobs/{retried}").text
        flaky = _atom_html(page, "flaky")
        assert re.search(r'class="small duration"[^>]*>\d+\.\d{3}s<', flaky)
        # The large result is folded: a summary with its size, the value inside.
        assert '<details class="folded result">' in flaky and "characters)</summary>" in flaky
        again = _atom_html(page, "again")
        assert again.count('<li class="try">') == 2
        assert "first &lt;try&gt; fails" in again and "Traceback (most recent call last)" in again
        # Store values one by one: the small one inline, the large one folded.
        details = page[page.index('id="details"') :]
        assert re.search(r"<th>store\.small</th><td><code class=\"value\">7</code>", details)
        big_row = details[details.index("<th>store.big</th>") :]
        assert big_row.index('<details class="folded value">') < big_row.index("yyyy")

        api = web.get(f"/api/jobs/{broken}").json()
        [atom] = api["flows"][0]["atoms"]
        assert atom["state"] == "REVERTED" and atom["failure"]["message"] == "always <b>broken</b>"
        assert atom["duration"] is None  # nothing recorded its time: none is made up
        page = web.get(f"/jobs/{broken}").text
        atom_html = _atom_html(page, "broken")
        assert "failed: builtins.ValueError: always &lt;b&gt;broken&lt;/b&gt;" in atom_html
        assert '<pre class="traceback">Traceback (most recent call last)' in atom_html
        assert "no time recorded" in atom_html


def _atom_html(page: str, name: str) -> str:
    start = page.index('<li class="atom ', page.index('<ol class="atoms">'))
    start = page.index(f'data-atom="{name}" data-state', start)
    end = page.find('<li class="atom ', start)
    return page[start : end if end >= 0 else len(page)]
