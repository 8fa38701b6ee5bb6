"""``taskflow.patterns.graph_flow``: ``Flow`` is Legato's ``GraphFlow``."""

from __future__ import annotations

from legato.flow.patterns import GraphFlow
from legato.flow.retry import Retry


class Flow(GraphFlow):
    """Legato's ``GraphFlow``, also taking its retry controller as the second positional
    argument, as TaskFlow's ``Flow(name, retry=None)`` does."""

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry=retry)


__all__ = ["Flow"]
