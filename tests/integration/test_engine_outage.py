"""Acceptance: a persistence outage stops the engine with StorageFailure, never a revert;
once the database is back, a new engine resumes the flow from the same flow detail."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

import legato.engine as le
from legato import errors
from legato.flow import LinearFlow, Task
from legato.persistence import connect
from legato.persistence.models import FlowDetail, LogBook
from legato.states import AtomState, FlowState
from legato.testing.proxy import TCPProxy


class Step(Task):
    def __init__(self, number: int, journal: list[int], proxy: TCPProxy | None) -> None:
        super().__init__(f"step{number}", provides=f"r{number}",
                         requires=[f"r{number - 1}"] if number > 1 else [])
        self.number = number
        self.journal = journal
        self.proxy = proxy

    def execute(self, **received: Any) -> int:
        self.journal.append(self.number)
        if self.proxy is not None and self.number == 2:
            self.proxy.cut()  # the database goes away while this step runs
        return self.number * 10 + sum(received.values())


def _flow(journal: list[int], proxy: TCPProxy | None) -> LinearFlow:
    return LinearFlow("outage").add(*(Step(i, journal, proxy) for i in range(1, 5)))


def test_outage_stops_with_storage_failure_then_resumes(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    with connect(postgres_url) as direct:
        direct.upgrade()
    with TCPProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy, \
            connect(proxy.url_for(postgres_url), retries=2, retry_delay=0.01,
                    connect_timeout=2) as persistence:
        book = LogBook("outage")
        fd = FlowDetail("outage")
        book.add(fd)
        persistence.save_logbook(book)
        journal: list[int] = []
        engine = le.load(_flow(journal, proxy), persistence=persistence, flow_detail=fd)
        with pytest.raises(errors.StorageFailure):
            engine.run()
        assert journal == [1, 2]

        with connect(postgres_url) as direct:
            stored = direct.get_flow_details(fd.uuid)
        assert stored.state == FlowState.RUNNING  # not reverted, not failed
        assert {ad.name: ad.state for ad in stored} == {
            "step1": AtomState.SUCCESS, "step2": AtomState.RUNNING,
            "step3": AtomState.PENDING, "step4": AtomState.PENDING}

        proxy.restore()
        resumed = le.load(_flow(journal, None), persistence=persistence,
                          flow_detail=persistence.get_flow_details(fd.uuid))
        resumed.run()
        assert journal == [1, 2, 2, 3, 4]  # step 2 ran again: its success was never stored
        final = persistence.get_flow_details(fd.uuid)
    assert final.state == FlowState.SUCCESS
    assert {ad.name: ad.results for ad in final} == {"step1": 10, "step2": 30, "step3": 60,
                                                     "step4": 100}
