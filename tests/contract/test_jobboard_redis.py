"""The shared jobboard conformance suite against a real Redis.

Run twice: once with the server's clock (leases really expire, short TTLs) and once with an
injected fake clock (the scripts take their time from it), so both time sources are covered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis

from legato.testing.jobboard import JobBoardConformance, MakeBoard, board_factory


@pytest.fixture
def make_board(redis_url: str) -> Iterator[MakeBoard]:
    with board_factory(redis_url) as make:
        yield make


class _Wipeable:
    @pytest.fixture
    def lose_data(self, redis_url: str) -> Iterator[Callable[[], None]]:
        """Deletes the board's keys (its namespace of the shared server), as a Redis that
        persists nothing loses them when it restarts."""
        namespace = dict(parse_qsl(urlsplit(redis_url).query))["namespace"]
        client = redis.Redis.from_url(redis_url.split("?", 1)[0])

        def lose() -> None:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            assert keys
            client.delete(*keys)

        yield lose
        client.close()


class TestRedisServerClock(_Wipeable, JobBoardConformance):
    fake_clock = False
    short_ttl = 0.3


class TestRedisFakeClock(_Wipeable, JobBoardConformance):
    fake_clock = True
