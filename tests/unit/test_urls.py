"""Board and persistence URLs: mistakes are refused with one clear message, before any driver
sees them (no server needed: every check happens before a connection is made)."""

from __future__ import annotations

import sys

import pytest

from legato import errors, jobboard, persistence

BOARD_UNKNOWN_OPTION = [
    "memory://?bogus=1",
    "sqlite:///x.db?bogus=1",
    "postgresql://u@127.0.0.1/db?bogus=1",
    "redis://127.0.0.1:6379/0?bogus=1",
    "zookeeper://127.0.0.1:2181/legato?bogus=1",
]
PERSISTENCE_UNKNOWN_OPTION = [
    "memory://?bogus=1",
    "sqlite:///x.db?bogus=1",
    "postgresql://u@127.0.0.1/db?bogus=1",
    "mysql://root@127.0.0.1/db?bogus=1",
]


@pytest.mark.parametrize("url", BOARD_UNKNOWN_OPTION)
def test_every_board_refuses_an_unknown_url_option(url: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        jobboard.connect(url)
    assert "bogus" in str(info.value)


@pytest.mark.parametrize("url", PERSISTENCE_UNKNOWN_OPTION)
def test_every_persistence_refuses_an_unknown_url_option(url: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        persistence.connect(url)
    assert "bogus" in str(info.value)


def test_driver_options_still_reach_the_driver() -> None:
    board = jobboard.connect("postgresql://u@127.0.0.1/db?sslmode=disable&options=-cx%3D1")
    assert board.url.query == {"sslmode": "disable", "options": "-cx=1"}  # type: ignore[attr-defined]
    persistence.connect("mysql://root@127.0.0.1/db?charset=utf8mb4")


@pytest.mark.parametrize("connect", [jobboard.connect, persistence.connect])
def test_a_sqlite_url_with_two_slashes_says_so(connect: object) -> None:
    with pytest.raises(ValueError, match=r"two slashes.*sqlite:///x\.db"):
        connect("sqlite://x.db")  # type: ignore[operator]


@pytest.mark.parametrize(("connect", "url"), [
    (jobboard.connect, "postgresql://u@127.0.0.1/"),
    (jobboard.connect, "postgresql://u@127.0.0.1"),
    (persistence.connect, "mysql://root@127.0.0.1/"),
    (persistence.connect, "postgresql://u@127.0.0.1/"),
])
def test_a_server_url_without_a_database_says_so(connect: object, url: str) -> None:
    with pytest.raises(ValueError, match="names no database"):
        connect(url)  # type: ignore[operator]


def test_a_mysql_board_is_not_served() -> None:
    with pytest.raises(errors.UnknownBackend):
        jobboard.connect("mysql://root@127.0.0.1/db")


def test_the_postgresql_board_without_its_driver_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(errors.MissingDriver, match=r"pip install 'legato\[postgres\]'"):
        jobboard.connect("postgresql://u@127.0.0.1/db")
