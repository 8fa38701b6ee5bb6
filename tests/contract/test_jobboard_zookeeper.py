"""The shared jobboard conformance suite against a real ZooKeeper.

Run twice: with real time (leases end by TTL or by the owner's session) and with an injected fake
clock (TTLs, delays and entity expiry then follow ``FakeClock.advance``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato.testing.jobboard import JobBoardConformance, MakeBoard, board_factory


@pytest.fixture
def make_board(zookeeper_url: str) -> Iterator[MakeBoard]:
    with board_factory(zookeeper_url) as make:
        yield make


class TestZooKeeperRealClock(JobBoardConformance):
    fake_clock = False
    short_ttl = 0.3


class TestZooKeeperFakeClock(JobBoardConformance):
    fake_clock = True
