"""A jobboard on ZooKeeper (kazoo): ``ZooKeeperJobBoard`` and its ``ZooKeeperSettings``.

The package's modules: ``board`` (the board: claims, leases, transactions), ``index`` (the
in-memory view of the jobs, kept current by watch events), ``follow`` (the watches and reads
that keep the index current), ``records`` (what job and claim nodes hold), ``entities``,
``settings``, and ``kazoo_compat`` (the one request kazoo has no public call for).
"""

from legato.jobboard.zookeeper.board import ZooKeeperJobBoard
from legato.jobboard.zookeeper.settings import ZooKeeperSettings

__all__ = ["ZooKeeperJobBoard", "ZooKeeperSettings"]
