"""The jobboard conformance suite against the in-memory board."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from legato import jobboard
from legato.jobboard.base import JobBoard
from legato.jobboard.memory import MemoryJobBoard
from legato.testing.jobboard import JobBoardConformance, board_factory, run_claim_race


@pytest.fixture
def memory_url() -> str:
    return f"memory://{uuid.uuid4().hex}"


class TestMemoryJobBoard(JobBoardConformance):
    fake_clock = True

    @pytest.fixture
    def make_board(self, memory_url: str) -> Iterator[Callable[..., JobBoard]]:
        with board_factory(memory_url) as make:
            yield make


class TestMemoryJobBoardRealClock(JobBoardConformance):
    """The same suite with real time passing, as the networked backends run it."""

    short_ttl = 0.2

    @pytest.fixture
    def make_board(self, memory_url: str) -> Iterator[Callable[..., JobBoard]]:
        with board_factory(memory_url) as make:
            yield make


def test_claim_race_threads(memory_url: str) -> None:
    with board_factory(memory_url) as make:
        make()  # keeps the named storage alive while the race opens and closes boards
        counts = run_claim_race(memory_url, jobs=1000, processes=0, threads=8)
    assert len(counts) == 1000 and set(counts.values()) == {1}


def test_private_boards_share_nothing() -> None:
    with jobboard.connect("memory://") as a, jobboard.connect("memory://") as b:
        a.post("only on a")
        assert (a.job_count, b.job_count) == (1, 0)


def test_named_storage_dropped_with_last_board(memory_url: str) -> None:
    with jobboard.connect(memory_url) as a:
        a.post("x")
        with jobboard.connect(memory_url) as b:
            assert b.job_count == 1
    with jobboard.connect(memory_url) as c:
        assert c.job_count == 0


def test_reset_all(memory_url: str) -> None:
    with jobboard.connect(memory_url) as a:
        a.post("x")
        MemoryJobBoard.reset_all()
        with jobboard.connect(memory_url) as b:
            assert b.job_count == 0
