"""``taskflow.persistence.models``: logbooks, flow and atom details are Legato's."""

from __future__ import annotations

from legato.persistence.models import AtomDetail, FlowDetail, LogBook, RetryDetail, TaskDetail

__all__ = ["AtomDetail", "FlowDetail", "LogBook", "RetryDetail", "TaskDetail"]
