"""Which SQL URLs reach one database (``database_key``): only those may share a transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato._sql.engine import database_key, normalise_url


def _key(url: str) -> str | None:
    return database_key(normalise_url(url))


def test_driver_and_password_do_not_make_another_database() -> None:
    assert _key("postgres://u@h:5432/db") == _key("postgresql+psycopg://u:secret@h:5432/db")
    assert "secret" not in (_key("postgresql://u:secret@h/db") or "")


@pytest.mark.parametrize("other", [
    "postgresql://u@h/db?options=-csearch_path%3Dother",  # another schema
    "postgresql://v@h/db", "postgresql://u@elsewhere/db", "postgresql://u@h/db2",
    "mysql://u@h/db",
])
def test_anything_else_does(other: str) -> None:
    assert _key("postgresql://u@h/db?options=-csearch_path%3Dmine") != _key(other)


def test_a_sqlite_file_is_its_real_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _key("sqlite:///one.db") == _key(f"sqlite:///{tmp_path / 'one.db'}")
    assert _key("sqlite:///one.db") != _key("sqlite:///two.db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_is_reached_by_no_one_else(url: str) -> None:
    assert _key(url) is None
