"""Fixtures for the contract tests (services come from tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest

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
