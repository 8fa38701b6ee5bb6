"""The process engine: tasks run in child processes; pickling problems are clear errors."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

import legato.engine as le
from legato import errors
from legato.flow import LinearFlow, Task, UnorderedFlow, task


class Pid(Task):
    def execute(self) -> int:
        return os.getpid()


class Square(Task):
    def execute(self, x: int) -> int:
        return x * x


class Fails(Task):
    def execute(self) -> None:
        raise KeyError("missing in child")


class ReturnsLock(Task):
    def execute(self) -> Any:
        return threading.Lock()


class HoldsLock(Task):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.lock = threading.Lock()

    def execute(self) -> None:
        return None


@task(provides="cubed")
def cube(x: int) -> list[int]:
    return [x ** 3, os.getpid()]


def test_decorated_function_tasks_pickle_by_reference() -> None:
    values = le.run(LinearFlow("f").add(cube), engine="process", max_workers=1,
                    store={"x": 3})
    assert values["cubed"][0] == 27 and values["cubed"][1] != os.getpid()


def test_tasks_run_in_other_processes() -> None:
    flow = LinearFlow("f").add(Pid("p", provides="pid"), Square("s", provides="sq"))
    values = le.run(flow, engine="process", max_workers=2, store={"x": 7})
    assert values["sq"] == 49
    assert values["pid"] != os.getpid()


def test_child_failure_is_reraised_with_its_type() -> None:
    with pytest.raises(KeyError, match="missing in child"):
        le.run(UnorderedFlow("u").add(Fails("f")), engine="process", max_workers=1)


def test_unpicklable_task_and_result_name_the_task() -> None:
    with pytest.raises(errors.SerializationError, match=r"'holder'.*pickled"):
        le.run(LinearFlow("f").add(HoldsLock("holder")), engine="process", max_workers=1)
    with pytest.raises(errors.SerializationError, match=r"'locker'.*pickled"):
        le.run(LinearFlow("f").add(ReturnsLock("locker")), engine="process", max_workers=1)
