"""``taskflow.task``: tasks are Legato's."""

from __future__ import annotations

from legato.flow.task import FunctionTask as FunctorTask
from legato.flow.task import Task

__all__ = ["FunctorTask", "Task"]
