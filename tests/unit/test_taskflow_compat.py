"""``legato.taskflow``: TaskFlow's import paths and call shapes over Legato's objects."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

import legato
from legato import errors
from legato.conductor import BlockingConductor
from legato.flow.patterns import GraphFlow, LinearFlow, UnorderedFlow
from legato.persistence.base import Persistence
from legato.taskflow import engines, retry, states, task
from legato.taskflow.conductors import backends as conductor_backends
from legato.taskflow.jobs import backends as job_backends
from legato.taskflow.patterns import graph_flow, linear_flow, unordered_flow
from legato.taskflow.persistence import backends as persistence_backends
from legato.taskflow.persistence import models


class Double(task.Task):
    default_provides = "doubled"

    def execute(self, x: int) -> int:
        return 2 * x


@legato.flow_factory
def doubling_flow() -> LinearFlow:
    return linear_flow.Flow("doubling").add(Double("double"))


def not_registered_flow() -> LinearFlow:
    return linear_flow.Flow("doubling").add(Double("double"))


def test_persistence_fetch_takes_a_taskflow_conf_and_its_connection_leaves_it_open(
        tmp_path: Path) -> None:
    backend = persistence_backends.fetch({"connection": f"sqlite:///{tmp_path}/flows.db"})
    assert isinstance(backend, Persistence)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
        conn.save_logbook(models.LogBook("first"))
    book = models.LogBook("second")
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
        assert conn.get_logbook(book.uuid).name == "second"
    backend.close()


def test_persistence_conf_without_a_connection_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="needs a 'connection' URL"):
        persistence_backends.fetch({"max_pool_size": 5})


def test_a_board_conf_naming_only_a_kind_asks_for_a_url() -> None:
    with pytest.raises(ValueError, match="give the board as a URL") as info:
        job_backends.fetch("jobs", {"board": "zookeeper", "hosts": "127.0.0.1:2181"})
    assert "\n" not in str(info.value)


def test_board_fetch_names_the_board_and_backend_connects_it() -> None:
    board = job_backends.fetch("my-board", "memory://")
    assert board.name == "my-board" and not board.connected
    with job_backends.backend("other", {"board": "memory://"}) as connected:
        assert connected.name == "other" and connected.connected
    assert not connected.connected


@pytest.mark.parametrize(("module", "native"), [(linear_flow, LinearFlow),
                                               (unordered_flow, UnorderedFlow),
                                               (graph_flow, GraphFlow)])
def test_flow_patterns_take_their_retry_positionally(module: object, native: type) -> None:
    controller = retry.Times(2)
    flow = module.Flow("f", controller)  # type: ignore[attr-defined]
    assert isinstance(flow, native) and flow.retry is controller


def test_engines_run_on_the_default_engine_with_a_backend_conf(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flows.db"
    with persistence_backends.backend(url) as backend:
        backend.upgrade()
    results = engines.run(linear_flow.Flow("f").add(Double("double")), store={"x": 21},
                          backend={"connection": url}, engine="default")
    assert results["doubled"] == 42


def test_save_factory_details_needs_a_backend() -> None:
    with pytest.raises(TypeError, match="needs backend="):
        engines.save_factory_details(models.FlowDetail("f", "u1"), doubling_flow, [], {})


def test_a_flow_rebuilds_only_from_a_registered_factory() -> None:
    backend = persistence_backends.fetch("memory://")
    book = models.LogBook("b")
    good, bad = models.FlowDetail("good", "g1"), models.FlowDetail("bad", "b1")
    book.add(good)
    book.add(bad)
    backend.save_logbook(book)
    engines.save_factory_details(good, doubling_flow, [], {}, backend=backend)
    engines.save_factory_details(bad, not_registered_flow, [], {}, backend=backend)
    assert engines.flow_from_detail(good).name == "doubling"
    with pytest.raises(errors.DisallowedFactory):
        engines.flow_from_detail(bad)
    engine = engines.load_from_detail(good, store={"x": 4}, backend=backend)
    engine.run()
    assert engine.storage.fetch("doubled") == 8


def test_load_from_factory_records_the_factory_and_runs() -> None:
    backend = persistence_backends.fetch("memory://")
    engine = engines.load_from_factory(doubling_flow, store={"x": 5}, backend=backend)
    engine.run()
    assert engine.storage.fetch("doubled") == 10
    (book,) = backend.get_logbooks()
    (flow_detail,) = book
    assert flow_detail.meta["factory"]["name"].endswith(":doubling_flow")


def test_conductor_fetch_and_names_are_taskflows() -> None:
    board = job_backends.fetch("b", "memory://")
    conductor = conductor_backends.fetch("blocking", "c1", board)
    assert isinstance(conductor, BlockingConductor)
    assert retry.RETRY == "RETRY" and retry.REVERT_ALL == "REVERT_ALL"
    assert states.SUCCESS == "SUCCESS" and states.COMPLETE == "COMPLETE"
