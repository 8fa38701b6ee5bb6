"""Fixtures for the contract tests (services come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from legato.persistence.memory import MemoryPersistence


@pytest.fixture
def memory_persistence() -> MemoryPersistence:
    return MemoryPersistence()
