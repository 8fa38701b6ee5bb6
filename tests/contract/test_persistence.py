"""The persistence conformance suite on every backend: memory, SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato import persistence as legato_persistence
from legato.persistence.base import Persistence
from legato.persistence.memory import MemoryPersistence
from legato.testing.persistence import PersistenceConformance


def _upgraded(url: str) -> Iterator[Persistence]:
    backend = legato_persistence.connect(url)
    backend.upgrade()
    try:
        yield backend
    finally:
        backend.close()


class TestMemoryPersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self) -> Iterator[Persistence]:
        backend = MemoryPersistence()
        backend.upgrade()
        yield backend
        backend.close()


class TestSQLitePersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self, sqlite_url: str) -> Iterator[Persistence]:
        yield from _upgraded(sqlite_url)


class TestPostgresPersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self, postgres_url: str) -> Iterator[Persistence]:
        yield from _upgraded(postgres_url)


class TestMariaDBPersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self, mysql_url: str) -> Iterator[Persistence]:
        yield from _upgraded(mysql_url)


class TestSQLiteInMemoryPersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self) -> Iterator[Persistence]:
        yield from _upgraded("sqlite://")
