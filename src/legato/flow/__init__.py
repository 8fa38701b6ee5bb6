"""Flow definitions: tasks, retries and patterns. Definitions only: no I/O, no engine."""

from __future__ import annotations

from legato.flow.atom import Atom
from legato.flow.factory import flow_factory, registered_factories
from legato.flow.patterns import Flow, GraphFlow, LinearFlow, UnorderedFlow
from legato.flow.retry import (
    AlwaysRevert,
    AlwaysRevertAll,
    Decision,
    ForEach,
    History,
    ParameterizedForEach,
    Retry,
    Times,
)
from legato.flow.task import FunctionTask, Task, task

__all__ = [
    "AlwaysRevert",
    "AlwaysRevertAll",
    "Atom",
    "Decision",
    "Flow",
    "ForEach",
    "FunctionTask",
    "GraphFlow",
    "History",
    "LinearFlow",
    "ParameterizedForEach",
    "Retry",
    "Task",
    "Times",
    "UnorderedFlow",
    "flow_factory",
    "registered_factories",
    "task",
]
