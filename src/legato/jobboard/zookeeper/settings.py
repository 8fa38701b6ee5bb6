"""How to reach the ZooKeeper board's server, and where the board lives: ``ZooKeeperSettings``
(``legato.jobboard.zookeeper`` exports it with the board)."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from legato import errors
from legato._redact import redact

__all__ = ["ZooKeeperSettings", "split_url"]

_BOARD_QUERY = ("ttl", "poll_interval")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZooKeeperSettings:
    """How to reach ZooKeeper and where the board lives.

    Attributes:
        hosts: ``host:port[,host:port...]``.
        path: the board's root node; boards on different paths are independent.
        timeout: seconds to wait for the server, on connect and on each call, before
            ``BoardUnavailable``. Calls made while disconnected fail at once.
        session_timeout: the ZooKeeper session timeout: a dead owner's claims end at most this
            long after its last heartbeat, whatever their TTL. So it also caps the board's
            default TTL and the lease a conductor trusts (``lease_cap``). The server clamps it
            to its ``minSessionTimeout``..``maxSessionTimeout``: keep it within them (a server
            that cuts it shorter ends claims sooner than conductors expect). A board given a
            started kazoo client (``client=``) takes the client's instead.
    """

    hosts: str = "127.0.0.1:2181"
    path: str = "/legato"
    timeout: float = 5.0
    session_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("ZooKeeper hosts must not be empty")
        if not self.path.startswith("/") or self.path == "/" or self.path.endswith("/"):
            raise ValueError(f"the board path must look like /name, got {self.path!r}")
        if self.timeout <= 0 or self.session_timeout <= 0:
            raise ValueError("timeout and session_timeout must be > 0")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> ZooKeeperSettings:
        """Parse a ``zookeeper://`` URL; keyword ``overrides`` win over its query.

        The board options ``ttl`` and ``poll_interval`` may also appear in the query; they are
        ignored here (``ZooKeeperJobBoard.from_url`` reads them).
        """
        parts = urlsplit(url)
        if parts.scheme != "zookeeper":
            raise errors.UnknownBackend(f"not a zookeeper:// URL: {redact(url)!r}")
        fields: dict[str, Any] = {}
        if "@" in parts.netloc:
            raise ValueError("zookeeper:// URLs with credentials are not supported (no ACLs)")
        if parts.netloc:
            fields["hosts"] = parts.netloc
        if parts.path.strip("/"):
            fields["path"] = parts.path.rstrip("/")
        for key, value in parse_qsl(parts.query):
            if key in ("timeout", "session_timeout"):
                fields[key] = float(value)
            elif key not in _BOARD_QUERY:
                raise ValueError(f"unknown zookeeper URL option {key!r}")
        fields.update(overrides)
        return cls(**fields)


def split_url(url: str, options: dict[str, Any]) -> tuple[ZooKeeperSettings, dict[str, Any]]:
    """The settings of a ``zookeeper://`` URL, with those of ``options`` winning over its query,
    and the board's other options: the query's ``ttl`` and ``poll_interval``, then the rest of
    ``options`` (``options`` loses the settings' keys)."""
    fields = {f.name for f in dataclasses.fields(ZooKeeperSettings)}
    overrides = {k: options.pop(k) for k in list(options) if k in fields}
    board_query = {k: float(v) for k, v in parse_qsl(urlsplit(url).query)
                   if k in _BOARD_QUERY}
    settings = ZooKeeperSettings.from_url(url, **overrides)
    return settings, {**board_query, **options}
