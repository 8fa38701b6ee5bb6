"""Real services for tests: each helper yields a URL isolated for one test and cleans up after.

Each reads an environment variable for the server (``LEGATO_TEST_POSTGRES_URL``,
``LEGATO_TEST_MYSQL_URL``, ``LEGATO_TEST_REDIS_URL``, ``LEGATO_TEST_ZOOKEEPER_HOSTS``) and
defaults to this machine's loopback. The TLS Redis and the password-protected Sentinel are
those ``scripts/redis-extra.sh`` starts, described in ``LEGATO_REDIS_EXTRA_DIR``. When a
server cannot be reached the helper raises ``ServiceUnavailable``; the test fixtures turn that
into a skip with the reason, or a failure when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

__all__ = [
    "PrivateRedis",
    "ServiceUnavailable",
    "mysql_url",
    "postgres_url",
    "private_redis",
    "redis_extra",
    "redis_sentinel_auth_url",
    "redis_tls_url",
    "redis_url",
    "zookeeper_url",
]

POSTGRES = os.environ.get("LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL = os.environ.get("LEGATO_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
REDIS = os.environ.get("LEGATO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ZOOKEEPER = os.environ.get("LEGATO_TEST_ZOOKEEPER_HOSTS", "127.0.0.1:2181")
#: Where scripts/redis-extra.sh keeps its certificates and describes its servers.
REDIS_EXTRA = os.environ.get("LEGATO_REDIS_EXTRA_DIR", "/var/tmp/legato-redis-extra")


class ServiceUnavailable(Exception):
    """A service a test needs cannot be reached."""


def _tag() -> str:
    return "legato_t_" + uuid.uuid4().hex[:12]


def _ping(host: str, port: int, name: str) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        raise ServiceUnavailable(f"{name} is not reachable at {host}:{port}: {exc}") from exc


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """A URL whose connections use a fresh schema (``search_path``), dropped afterwards."""
    parts = urlsplit(POSTGRES)
    _ping(parts.hostname or "127.0.0.1", parts.port or 5432, "PostgreSQL")
    import psycopg

    schema = _tag()
    base = POSTGRES.split("?", 1)[0]
    with psycopg.connect(base.replace("postgresql://", "postgresql://", 1),
                         autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def mysql_url() -> Iterator[str]:
    """A URL naming a fresh MariaDB/MySQL database, dropped afterwards."""
    parts = urlsplit(MYSQL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 3306
    _ping(host, port, "MariaDB")
    import pymysql

    database = _tag()
    user = parts.username or "root"
    password = parts.password or ""

    def run(sql: str) -> None:
        conn = pymysql.connect(host=host, port=port, user=user, password=password)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    run(f"CREATE DATABASE `{database}`")
    try:
        auth = user + (f":{password}" if password else "")
        yield f"mysql://{auth}@{host}:{port}/{database}"
    finally:
        run(f"DROP DATABASE IF EXISTS `{database}`")


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """A URL with a fresh key ``namespace``; every key under it is deleted afterwards."""
    parts = urlsplit(REDIS)
    _ping(parts.hostname or "127.0.0.1", parts.port or 6379, "Redis")
    import redis  # noqa: F401  (no driver: the caller skips, as for no server)

    namespace = _tag()
    sep = "&" if "?" in REDIS else "?"
    try:
        yield f"{REDIS}{sep}namespace={namespace}"
    finally:
        _delete_namespace(REDIS, namespace)


def redis_extra() -> dict[str, Any]:
    """What ``scripts/redis-extra.sh`` started: the TLS server's port and certificate files
    (``ca``, ``cert``, ``key``; ``other_ca``, ``other_cert``, ``other_key`` from a CA nobody
    trusts), the master's port and credentials, the Sentinel's port, credentials and service;
    ``ServiceUnavailable`` when it is not running."""
    described = Path(REDIS_EXTRA) / "services.json"
    try:
        info: dict[str, Any] = json.loads(described.read_text())
    except (OSError, ValueError) as exc:
        raise ServiceUnavailable(
            f"the TLS and Sentinel Redis servers are not set up ({described} unreadable: "
            f"{exc.__class__.__name__}); start them with scripts/redis-extra.sh") from None
    for name in ("tls_port", "master_port", "sentinel_port"):
        _ping("127.0.0.1", int(info[name]), f"Redis ({name.replace('_port', '')}, "
              "scripts/redis-extra.sh)")
    return info


@contextlib.contextmanager
def redis_tls_url() -> Iterator[str]:
    """A ``rediss://`` URL of the TLS Redis of ``redis_extra`` (CA bundle and client
    certificate in the query) with a fresh key ``namespace``, emptied afterwards."""
    info = redis_extra()
    namespace = _tag()
    query = urlencode({"ssl_ca_certs": info["ca"], "ssl_certfile": info["cert"],
                       "ssl_keyfile": info["key"], "namespace": namespace})
    url = f"rediss://127.0.0.1:{info['tls_port']}/0?{query}"
    try:
        yield url
    finally:
        _delete_namespace(url, namespace)


@contextlib.contextmanager
def redis_sentinel_auth_url() -> Iterator[str]:
    """A ``redis+sentinel://`` URL through the password-protected Sentinel of ``redis_extra``
    (the master's credentials in the URL, the Sentinel's in the query) with a fresh key
    ``namespace``, emptied afterwards."""
    info = redis_extra()
    namespace = _tag()
    query = urlencode({"sentinel_username": info["sentinel_username"],
                       "sentinel_password": info["sentinel_password"], "namespace": namespace})
    auth = f"{quote(info['master_username'], safe='')}:{quote(info['master_password'], safe='')}"
    url = (f"redis+sentinel://{auth}@127.0.0.1:{info['sentinel_port']}/{info['service']}/0"
           f"?{query}")
    try:
        yield url
    finally:
        _delete_namespace(url, namespace)


def _delete_namespace(url: str, namespace: str) -> None:
    from legato.jobboard.redis import RedisSettings

    client = RedisSettings.from_url(url).client()
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextlib.contextmanager
def zookeeper_url() -> Iterator[str]:
    """A URL whose path is a fresh node, deleted recursively afterwards."""
    host, _, port = ZOOKEEPER.split(",")[0].partition(":")
    _ping(host, int(port or 2181), "ZooKeeper")
    from kazoo.client import KazooClient

    path = f"/legato-tests/{_tag()}"
    try:
        yield f"zookeeper://{ZOOKEEPER}{path}"
    finally:
        client = KazooClient(hosts=ZOOKEEPER)
        client.start(timeout=10)
        try:
            client.delete(path, recursive=True)
        except Exception:  # nothing was created, or it is already gone
            pass
        finally:
            client.stop()
            client.close()


class PrivateRedis:
    """A ``redis-server`` of a test's own on a free loopback port, persisting nothing: tests
    that must restart or wipe a server use one, never the shared Redis.

    Attributes:
        port: the port it listens on (the same after ``restart``).
        url: ``redis://127.0.0.1:<port>/0``.
    """

    def __init__(self, executable: str, workdir: Path, args: tuple[str, ...] = ()) -> None:
        self._executable = executable
        self._workdir = workdir
        self._args = args
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait (up to 10 s) until it answers."""
        self._proc = subprocess.Popen(
            [self._executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", str(self._workdir), *self._args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self._proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise ServiceUnavailable(
                            f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (its data, held in memory only, is gone)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def restart(self) -> None:
        """Kill the server and start a new one on the same port: an empty server, as after a
        crash of a Redis that persists nothing."""
        self.stop()
        self.start()


@contextlib.contextmanager
def private_redis(*args: str) -> Iterator[PrivateRedis]:
    """A running ``PrivateRedis`` (``args``: more ``redis-server`` options), stopped
    afterwards; ``ServiceUnavailable`` when ``redis-server`` is not installed."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise ServiceUnavailable("redis-server is not installed")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="legato-redis-") as workdir:
        server = PrivateRedis(executable, Path(workdir), args)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
