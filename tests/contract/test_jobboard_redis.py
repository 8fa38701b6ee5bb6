"""The shared jobboard conformance suite against a real Redis.

Run twice: once with the server's clock (leases really expire, short TTLs) and once with an
injected fake clock (the scripts take their time from it), so both time sources are covered.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato.testing.jobboard import (
    JobBoardConformance,
    MakeBoard,
    RedisWipeable,
    board_factory,
)


@pytest.fixture
def make_board(redis_url: str) -> Iterator[MakeBoard]:
    with board_factory(redis_url) as make:
        yield make


class TestRedisServerClock(RedisWipeable, JobBoardConformance):
    fake_clock = False
    short_ttl = 0.3


class TestRedisFakeClock(RedisWipeable, JobBoardConformance):
    fake_clock = True
