"""The ZooKeeper board on a kazoo client it is given (``client=``, as TaskFlow's board takes):
it shares the client's session instead of opening one, and never stops or closes it.

The conformance suite runs on boards each given a started client of the test's (kazoo's own
handler, not the board's ``PollingHandler``), and on boards that all share one client; then the
sharing itself: closing a board leaves the client connected and usable, two boards on one
client (on one path or two) each keep their own index, and the lease cap is the client's
session timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient, KazooState

from legato import errors
from legato import jobboard as jb
from legato.jobboard.base import Entity
from legato.jobboard.zookeeper import ZooKeeperJobBoard
from legato.testing.jobboard import JobBoardConformance, MakeBoard


def _hosts(url: str) -> str:
    return url.removeprefix("zookeeper://").partition("/")[0]


@contextlib.contextmanager
def _started(url: str, **options: Any) -> Iterator[KazooClient]:
    client = KazooClient(hosts=_hosts(url), **options)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@contextlib.contextmanager
def _boards(url: str, client_for: Callable[[], KazooClient]) -> Iterator[MakeBoard]:
    boards = []

    def make(**options: Any) -> ZooKeeperJobBoard:
        board = jb.connect(url, client=client_for(), **options)
        assert isinstance(board, ZooKeeperJobBoard)
        board.connect()
        boards.append(board)
        return board

    try:
        yield make
    finally:
        for board in boards:
            with contextlib.suppress(errors.LegatoError):
                board.close()


class _Wipeable:
    loss_found_by_every_call = False
    counts_unread_delays = False

    @pytest.fixture
    def lose_data(self, zookeeper_url: str) -> Iterator[Callable[[], None]]:
        path = "/" + zookeeper_url.removeprefix("zookeeper://").partition("/")[2].split("?")[0]
        with _started(zookeeper_url) as client:
            yield lambda: client.delete(path, recursive=True)


class TestZooKeeperGivenClients(_Wipeable, JobBoardConformance):
    """Each board gets a client of its own, started and stopped by the test."""

    fake_clock = True

    @pytest.fixture
    def make_board(self, zookeeper_url: str) -> Iterator[MakeBoard]:
        # The boards close first, then the clients stop.
        with contextlib.ExitStack() as stack, _boards(
                zookeeper_url, lambda: stack.enter_context(_started(zookeeper_url))) as make:
            yield make


class TestZooKeeperOneSharedClient(_Wipeable, JobBoardConformance):
    """Every board of a test shares one client (one ZooKeeper session)."""

    fake_clock = True

    @pytest.fixture
    def make_board(self, zookeeper_url: str) -> Iterator[MakeBoard]:
        with _started(zookeeper_url) as client, _boards(zookeeper_url, lambda: client) as make:
            yield make


# -- sharing ----------------------------------------------------------------------------------

@pytest.fixture
def client(zookeeper_url: str) -> Iterator[KazooClient]:
    with _started(zookeeper_url, timeout=7.0) as started:
        yield started


def test_closing_the_board_leaves_the_client_connected(zookeeper_url: str,
                                                      client: KazooClient) -> None:
    session = client.client_id
    board = jb.connect(zookeeper_url, client=client)
    board.connect()
    job = board.post("shared")
    board.close()
    assert client.state == KazooState.CONNECTED and client.client_id == session
    assert client.exists("/") is not None  # still usable
    with jb.connect(zookeeper_url, client=client) as again:  # and usable by a new board
        assert [j.uuid for j in again.iterjobs()] == [job.uuid]
    assert client.state == KazooState.CONNECTED and client.client_id == session


def test_a_failed_connect_leaves_the_client_alone(client: KazooClient) -> None:
    """A board that cannot set up its path (here: a node where a parent should be is a
    sequential child of an ephemeral one, which ZooKeeper refuses) does not stop the client."""
    client.create("/legato-tests-ephemeral", ephemeral=True, makepath=True)
    try:
        board = jb.connect("zookeeper:///legato-tests-ephemeral/board", client=client)
        with pytest.raises(errors.BoardUnavailable):
            board.connect()
        assert client.state == KazooState.CONNECTED
    finally:
        client.delete("/legato-tests-ephemeral")


def test_a_client_that_is_not_started_is_refused_in_one_line(zookeeper_url: str) -> None:
    idle = KazooClient(hosts=_hosts(zookeeper_url))
    board = jb.connect(zookeeper_url, client=idle)
    with pytest.raises(errors.BoardUnavailable) as caught:
        board.connect()
    assert "not connected" in str(caught.value) and "\n" not in str(caught.value)
    idle.close()


def test_the_lease_cap_is_the_clients_session_timeout(zookeeper_url: str,
                                                      client: KazooClient) -> None:
    board = jb.connect(zookeeper_url, client=client, ttl=60.0)
    assert isinstance(board, ZooKeeperJobBoard)
    assert board.lease_cap == 7.0
    assert board.ttl == 7.0  # a longer TTL is cut to what the session guarantees


def test_two_boards_on_one_client_and_one_path_both_follow_it(zookeeper_url: str,
                                                              client: KazooClient) -> None:
    with jb.connect(zookeeper_url, client=client) as first, \
            jb.connect(zookeeper_url, client=client) as second:
        job = first.post("one")
        assert second.wait(timeout=10)
        claimed = second.claim_next("second")
        assert claimed is not None and claimed.uuid == job.uuid
        assert first.claim_next("first") is None
        second.consume(claimed, "second")
        assert first.wait_for_completion(job, 10)
        # Closing one board leaves the other following the path.
        second.close()
        late = first.post("two")
        assert [j.uuid for j in first.iterjobs(only_unclaimed=True)] == [late.uuid]
        taken = first.claim_next("first")
        assert taken is not None and taken.uuid == late.uuid


def test_two_boards_on_one_client_and_two_paths_stay_apart(zookeeper_url: str,
                                                           client: KazooClient) -> None:
    with jb.connect(zookeeper_url, client=client) as left, \
            jb.connect(zookeeper_url.replace("?", "/other?") if "?" in zookeeper_url
                       else zookeeper_url + "/other", client=client) as right:
        job = left.post("left only")
        assert [j.uuid for j in left.iterjobs()] == [job.uuid]
        assert list(right.iterjobs()) == []
        assert right.claim_next("right") is None


def test_a_client_and_a_kazoo_client_class_are_not_both_taken(client: KazooClient) -> None:
    with pytest.raises(ValueError, match="client"):
        ZooKeeperJobBoard(client=client, kazoo_client=KazooClient)


def test_closing_withdraws_the_boards_entities_but_not_the_sessions_claims(
        zookeeper_url: str, client: KazooClient) -> None:
    """The session goes on after ``close``: the board deletes the entities it registered
    (they would otherwise stay listed until they expire) and its claims stay until their TTL,
    as with any board that closes without releasing them."""
    with jb.connect(zookeeper_url) as watcher:
        board = jb.connect(zookeeper_url, client=client)
        board.connect()
        board.register_entity(Entity(kind="conductor", name="shared-one"))
        job = board.post("held")
        assert board.claim_next("shared-one") is not None
        assert [e.name for e in watcher.iter_entities("conductor")] == ["shared-one"]
        board.close()
        assert list(watcher.iter_entities("conductor")) == []
        assert watcher.find_owner(watcher.get(job.uuid)) == "shared-one"
