"""Exponential back-off delays, used for abandoned jobs and for retrying a failing jobboard."""

from __future__ import annotations

import dataclasses

__all__ = ["Backoff"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backoff:
    """``base * 2 ** (n - 1)`` seconds for the ``n``-th consecutive failure, capped at ``maximum``.

    Attributes:
        base: delay after the first failure, in seconds.
        maximum: the largest delay ever returned.
    """

    base: float = 1.0
    maximum: float = 60.0

    def __post_init__(self) -> None:
        if not self.base >= 0:
            raise ValueError("back-off base must be >= 0")
        if not self.maximum >= self.base:
            raise ValueError("back-off maximum must be >= its base")

    def delay(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures (0 for none)."""
        if failures <= 0:
            return 0.0
        # Cap the exponent so a job with a huge attempt count cannot overflow a float.
        return float(min(self.maximum, self.base * 2 ** min(failures - 1, 60)))
