"""Fixtures of the dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato import jobboard, persistence
from legato.jobboard.base import JobBoard
from legato.persistence.base import Persistence


@pytest.fixture
def stack(sqlite_url: str) -> Iterator[tuple[JobBoard, Persistence]]:
    """A SQLite board and persistence in one file, connected (closed afterwards)."""
    store = persistence.connect(sqlite_url)
    store.upgrade()
    with jobboard.connect(sqlite_url, persistence=store) as board:
        yield board, store
    store.close()
