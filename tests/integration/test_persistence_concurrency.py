"""Four processes each run 50 flows through the engine into one database at once: every atom of
every flow must be stored SUCCESS with its right result, and SQLite must never report
"database is locked" (not even as a retried storage failure)."""

from __future__ import annotations

import pytest

from legato import persistence
from legato.testing.persistence import run_concurrent_flows

pytestmark = pytest.mark.slow


def _upgrade(url: str) -> None:
    with persistence.connect(url) as backend:
        backend.upgrade()


def test_four_processes_share_one_sqlite_file(sqlite_url: str) -> None:
    _upgrade(sqlite_url)
    result = run_concurrent_flows(sqlite_url, processes=4, flows=50)
    assert result.flows == 200
    assert result.retries == []


def test_four_processes_share_one_postgres_database(postgres_url: str) -> None:
    _upgrade(postgres_url)
    result = run_concurrent_flows(postgres_url, processes=4, flows=50)
    assert result.flows == 200
    assert result.retries == []


def test_four_processes_share_one_mariadb_database(mysql_url: str) -> None:
    # Fewer flows: beyond the SQLite and PostgreSQL acceptance runs, and every commit fsyncs.
    _upgrade(mysql_url)
    result = run_concurrent_flows(mysql_url, processes=4, flows=25)
    assert result.flows == 100
    assert result.retries == []
