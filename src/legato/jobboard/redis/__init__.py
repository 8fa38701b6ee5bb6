"""The Redis jobboard (``legato[redis]``): ``board`` holds the board, ``lua/`` its scripts."""

from __future__ import annotations

from legato.jobboard.redis.board import RedisJobBoard, RedisSettings

__all__ = ["RedisJobBoard", "RedisSettings"]
