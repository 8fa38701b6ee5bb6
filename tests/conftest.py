"""Fixtures shared by every test folder: real services, isolated per test."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.testing import services

IN_CI = os.environ.get("CI") == "true"


def _service(factory: Callable[[], Any]) -> Iterator[Any]:
    try:
        cm = factory()
        url = cm.__enter__()
    except (services.ServiceUnavailable, ImportError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"required service unavailable under CI=true: {exc}")
        pytest.skip(f"service unavailable: {exc}")
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            cm.__exit__(None, None, None)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _service(services.postgres_url)


@pytest.fixture
def mysql_url() -> Iterator[str]:
    yield from _service(services.mysql_url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from _service(services.redis_url)


def _redis_extra(factory: Callable[[], Any]) -> Callable[[], Any]:
    """``factory``, after starting scripts/redis-extra.sh (idempotent) if its servers are not
    running: CI starts them with scripts/services.sh, a developer's machine here."""
    def started() -> Any:
        try:
            services.redis_extra()
        except services.ServiceUnavailable:
            script = Path(__file__).resolve().parents[1] / "scripts" / "redis-extra.sh"
            done = subprocess.run([str(script), "start"], capture_output=True, text=True,
                                  timeout=120, check=False)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise services.ServiceUnavailable(
                    f"scripts/redis-extra.sh could not start the TLS and Sentinel Redis "
                    f"servers: {last}") from None
        return factory()

    return started


@pytest.fixture
def redis_tls_url() -> Iterator[str]:
    yield from _service(_redis_extra(services.redis_tls_url))


@pytest.fixture
def redis_sentinel_auth_url() -> Iterator[str]:
    yield from _service(_redis_extra(services.redis_sentinel_auth_url))


@pytest.fixture
def redis_extra() -> Iterator[dict[str, Any]]:
    """What scripts/redis-extra.sh started (``services.redis_extra``)."""
    yield from _service(_redis_extra(_described))


@contextlib.contextmanager
def _described() -> Iterator[dict[str, Any]]:
    yield services.redis_extra()


@pytest.fixture
def zookeeper_url() -> Iterator[str]:
    yield from _service(services.zookeeper_url)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'legato.db'}"
