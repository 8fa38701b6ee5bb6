"""The shared jobboard conformance suite on a Redis reached over TLS with a client certificate,
and on a Redis reached through a Sentinel that has a password of its own (both servers started
by scripts/redis-extra.sh). The whole suite runs on each, with a fake clock (the server-clock
variant runs on the shared Redis in test_jobboard_redis.py; TLS and Sentinel change only how
the board connects)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from legato.testing.jobboard import (
    JobBoardConformance,
    MakeBoard,
    board_factory,
    redis_data_loser,
)


class TestRedisOverTLS(JobBoardConformance):
    fake_clock = True

    @pytest.fixture
    def make_board(self, redis_tls_url: str) -> Iterator[MakeBoard]:
        with board_factory(redis_tls_url) as make:
            yield make

    @pytest.fixture
    def lose_data(self, redis_tls_url: str) -> Iterator[Callable[[], None]]:
        yield from redis_data_loser(redis_tls_url)


class TestRedisThroughPasswordSentinel(JobBoardConformance):
    fake_clock = True

    @pytest.fixture
    def make_board(self, redis_sentinel_auth_url: str) -> Iterator[MakeBoard]:
        with board_factory(redis_sentinel_auth_url) as make:
            yield make

    @pytest.fixture
    def lose_data(self, redis_sentinel_auth_url: str) -> Iterator[Callable[[], None]]:
        yield from redis_data_loser(redis_sentinel_auth_url)
