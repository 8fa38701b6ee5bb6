"""Fixtures for the contract tests (services come from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from legato import jobboard as jb
from legato.jobboard.base import JobBoard
from legato.persistence.base import Persistence
from legato.persistence.memory import MemoryPersistence

#: Every jobboard backend; conductor tests run on each.
BOARDS = ["memory", "sqlite", "postgres", "redis", "zookeeper"]


@pytest.fixture(params=BOARDS)
def board_url(request: pytest.FixtureRequest) -> str:
    """An isolated URL on each board backend in turn (modules may override this fixture)."""
    if request.param == "memory":
        return f"memory://contract-{uuid.uuid4().hex}"
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def persistence() -> MemoryPersistence:
    """Memory persistence shared by the poster and the conductors of one test."""
    return MemoryPersistence()


@pytest.fixture
def memory_persistence() -> MemoryPersistence:
    return MemoryPersistence()


@pytest.fixture
def make_board(board_url: str, persistence: Persistence) -> Iterator[Callable[[], JobBoard]]:
    """Connected boards on ``board_url`` sharing ``persistence``, closed after the test."""
    boards: list[JobBoard] = []

    def make() -> JobBoard:
        board = jb.connect(board_url, persistence=persistence)
        board.connect()
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.close()


@pytest.fixture
def board(make_board: Callable[[], JobBoard]) -> JobBoard:
    return make_board()
