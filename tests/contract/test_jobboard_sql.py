"""The jobboard conformance suite and acceptance runs against SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from legato import errors, jobboard
from legato.jobboard.base import JobBoard
from legato.jobboard.sql import SQLJobBoard
from legato.jobboard.sql.tables import jobs
from legato.states import JobState
from legato.testing.jobboard import (
    JobBoardConformance,
    board_factory,
    run_claim_race,
    run_dead_owner,
    run_outage,
    run_renewal,
)
from legato.testing.proxy import TCPProxy


class TestSQLiteJobBoard(JobBoardConformance):
    fake_clock = True

    @pytest.fixture
    def make_board(self, sqlite_url: str) -> Iterator[Callable[..., JobBoard]]:
        with board_factory(sqlite_url) as make:
            yield make


class TestPostgresJobBoard(JobBoardConformance):
    """Real time here: leases are measured by the server's clock."""

    short_ttl = 0.4

    @pytest.fixture
    def make_board(self, postgres_url: str) -> Iterator[Callable[..., JobBoard]]:
        with board_factory(postgres_url) as make:
            yield make


class TestPostgresJobBoardInjectedClock(JobBoardConformance):
    """With a clock injected, PostgreSQL leases follow it instead of the server's."""

    fake_clock = True

    @pytest.fixture
    def make_board(self, postgres_url: str) -> Iterator[Callable[..., JobBoard]]:
        with board_factory(postgres_url) as make:
            yield make


@pytest.fixture(params=["sqlite", "postgresql"])
def board_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


def test_claim_race_two_processes(board_url: str) -> None:
    counts = run_claim_race(board_url, jobs=1000, processes=2, threads=8)
    assert len(counts) == 1000 and set(counts.values()) == {1}


def test_dead_owner_claim_expires(board_url: str) -> None:
    result = run_dead_owner(board_url, ttl=1.0)
    assert result.new_fence > result.old_fence


def test_renewed_claim_is_never_taken(board_url: str) -> None:
    assert run_renewal(board_url) > 0


@pytest.mark.parametrize("chained", [False, True], ids=["claim_next", "consume_and_claim"])
def test_undecodable_row_is_skipped_not_deleted(board_url: str, chained: bool,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with jobboard.connect(board_url) as board:
        first = board.post("before")
        engine = sa.create_engine(sa.make_url(board_url).set(
            drivername="postgresql+psycopg" if board_url.startswith("postgresql") else "sqlite"))
        with engine.begin() as conn:
            conn.execute(jobs.insert().values(
                uuid="bad-row", name="garbage", details="{not json", priority=2,
                created_on=0.0, state="UNCLAIMED", attempts=0, fence=0))
        last = board.post("after")
        with caplog.at_level(logging.WARNING, logger="legato.jobboard.sql"):
            assert list(board.iterjobs()) == [first, last]
            got = board.claim_next("owner-a")
            assert got == first and got is not None
            if chained:
                # A board that has not met the bad row yet claims it first, in the consume's
                # transaction: that rolls back, and the consume is then made on its own.
                with jobboard.connect(board_url) as fresh:
                    assert fresh.consume_and_claim_next(got, "owner-a") == last
                assert board.state_of(first) is JobState.COMPLETE
            else:
                assert board.claim_next("owner-a") == last
            assert board.claim_next("owner-a") is None
        assert "cannot be decoded" in caplog.text
        assert board.job_count == (2 if chained else 3)  # the bad row still there
        with engine.connect() as conn:
            row = conn.execute(sa.select(jobs.c.details, jobs.c.attempts)
                               .where(jobs.c.uuid == "bad-row")).one()
        assert tuple(row) == ("{not json", 0)
        engine.dispose()


def test_postgres_outage(postgres_url: str) -> None:
    with TCPProxy("127.0.0.1", 5432) as proxy:
        result = run_outage(postgres_url, proxy, timeout=10.0, connect_timeout=2.0)
    assert result["slowest_failure"] <= 10.0


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(errors.UnknownBackend):
        SQLJobBoard.from_url("oracle://x/y")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="memory://"):
        jobboard.connect(url)
