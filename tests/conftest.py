"""Fixtures shared by every test folder: real services, isolated per test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from legato.testing import services

IN_CI = os.environ.get("CI") == "true"


def _service(factory: Callable[[], Any]) -> Iterator[str]:
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


@pytest.fixture
def zookeeper_url() -> Iterator[str]:
    yield from _service(services.zookeeper_url)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'legato.db'}"
