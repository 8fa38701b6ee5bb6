"""Board and persistence URLs: mistakes are refused with one clear message, before any driver
sees them (no server needed: every check happens before a connection is made)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

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


def test_the_library_creates_the_folder_of_a_sqlite_file(tmp_path: Path) -> None:
    store = persistence.connect(f"sqlite:///{tmp_path / 'p' / 'q' / 'legato.db'}")
    store.upgrade()
    store.close()
    assert (tmp_path / "p" / "q" / "legato.db").exists()
    with jobboard.connect(f"sqlite:///{tmp_path / 'b' / 'board.db'}") as board:
        board.post("x")
    assert (tmp_path / "b" / "board.db").exists()


def test_sqlite_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file where a folder should be")
    for name in ("persistence.db", "board.db"):
        path = tmp_path / "plain" / name
        with pytest.raises(errors.LegatoError) as info:
            if name == "board.db":
                with jobboard.connect(f"sqlite:///{path}"):
                    pass
            else:
                persistence.connect(f"sqlite:///{path}").upgrade()
        assert str(path) in str(info.value)
    unopenable = tmp_path / "folder.db"
    unopenable.mkdir()  # a folder where the file should be: SQLite cannot open it
    with pytest.raises(errors.StorageFailure, match=re.escape(str(unopenable))):
        persistence.connect(f"sqlite:///{unopenable}").upgrade()
    board = jobboard.connect(f"sqlite:///{unopenable}")
    with pytest.raises(errors.BoardUnavailable, match=re.escape(str(unopenable))):
        board.connect()
