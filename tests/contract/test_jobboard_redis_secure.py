"""The shared jobboard conformance suite on a Redis reached over TLS with a client certificate,
and on a Redis reached through a Sentinel that has a password of its own (both servers started
by scripts/redis-extra.sh). The whole suite runs on each, with a fake clock (the server-clock
variant runs on the shared Redis in test_jobboard_redis.py; TLS and Sentinel change only how
the board connects)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest

from legato.jobboard.redis import RedisSettings
from legato.testing.jobboard import JobBoardConformance, MakeBoard, board_factory


def _loser(url: str) -> Iterator[Callable[[], None]]:
    """``lose_data`` for a board on ``url``: delete its namespace's keys (as a Redis that
    persists nothing loses them on restart), through a client made from the same URL."""
    namespace = dict(parse_qsl(urlsplit(url).query))["namespace"]
    client = RedisSettings.from_url(url).client()

    def lose() -> None:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        assert keys
        client.delete(*keys)

    yield lose
    client.close()


class TestRedisOverTLS(JobBoardConformance):
    fake_clock = True

    @pytest.fixture
    def make_board(self, redis_tls_url: str) -> Iterator[MakeBoard]:
        with board_factory(redis_tls_url) as make:
            yield make

    @pytest.fixture
    def lose_data(self, redis_tls_url: str) -> Iterator[Callable[[], None]]:
        yield from _loser(redis_tls_url)


class TestRedisThroughPasswordSentinel(JobBoardConformance):
    fake_clock = True

    @pytest.fixture
    def make_board(self, redis_sentinel_auth_url: str) -> Iterator[MakeBoard]:
        with board_factory(redis_sentinel_auth_url) as make:
            yield make

    @pytest.fixture
    def lose_data(self, redis_sentinel_auth_url: str) -> Iterator[Callable[[], None]]:
        yield from _loser(redis_sentinel_auth_url)
