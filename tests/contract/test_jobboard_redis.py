"""The shared jobboard conformance suite against a real Redis.

Run twice: once with the server's clock (leases really expire, short TTLs) and once with an
injected fake clock (the scripts take their time from it), so both time sources are covered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from legato import jobboard
from legato.jobboard.base import JobBoard
from legato.testing.jobboard import JobBoardConformance


@pytest.fixture
def make_board(redis_url: str) -> Iterator[Callable[..., JobBoard]]:
    boards: list[JobBoard] = []

    def make(**options: Any) -> JobBoard:
        board = jobboard.connect(redis_url, **options)
        board.connect()
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.close()


class TestRedisServerClock(JobBoardConformance):
    fake_clock = False
    short_ttl = 0.3


class TestRedisFakeClock(JobBoardConformance):
    fake_clock = True
