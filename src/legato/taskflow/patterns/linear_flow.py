"""``taskflow.patterns.linear_flow``: ``Flow`` is Legato's ``LinearFlow``."""

from __future__ import annotations

from legato.flow.patterns import LinearFlow
from legato.flow.retry import Retry


class Flow(LinearFlow):
    """Legato's ``LinearFlow``, also taking its retry controller as the second positional
    argument, as TaskFlow's ``Flow(name, retry=None)`` does."""

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry=retry)


__all__ = ["Flow"]
