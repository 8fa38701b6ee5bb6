"""The Redis board over TLS (CA bundle, client certificates) and through a Sentinel with its own
credentials, against the real servers scripts/redis-extra.sh starts: what works, and what a
wrong CA, a missing client certificate or a wrong password says (one line, no secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from legato import errors
from legato import jobboard as jb
from legato.jobboard.redis import RedisJobBoard, RedisSettings

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]


def _with(url: str, **query: str | None) -> str:
    """``url`` with its query items replaced by ``query`` (None removes one)."""
    base, _, old = url.partition("?")
    items = dict(parse_qsl(old))
    items.update(query)
    return f"{base}?{urlencode({k: v for k, v in items.items() if v is not None})}"


def _failure(url: str) -> errors.LegatoError:
    board = jb.connect(url)
    with pytest.raises(errors.LegatoError) as caught:
        board.connect()
    return caught.value


def _one_line_without(error: BaseException, *secrets: str) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text, text
    for secret in secrets:
        assert secret not in text, text
    return text


def _cli_error(url: str, tmp_path: Path, *secrets: str) -> str:
    """stderr of ``legato jobs list`` on board ``url``: it must fail with one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    result = subprocess.run(
        [*LEGATO, "--board", url, "--persistence", f"sqlite:///{tmp_path / 'p.db'}",
         "jobs", "list"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for secret in secrets:
        assert secret not in result.stderr + result.stdout
    return result.stderr


# -- TLS ----------------------------------------------------------------------------------------

def test_tls_options_come_from_the_query_and_from_keywords(redis_extra: dict[str, Any]) -> None:
    url = f"rediss://127.0.0.1:{redis_extra['tls_port']}/0?ssl_ca_certs={redis_extra['ca']}"
    settings = RedisSettings.from_url(url, ssl_certfile=redis_extra["cert"],
                                      ssl_keyfile=redis_extra["key"])
    assert settings.ssl and settings.ssl_ca_certs == redis_extra["ca"]
    assert (settings.ssl_certfile, settings.ssl_keyfile) == (redis_extra["cert"],
                                                            redis_extra["key"])
    plain = RedisSettings.from_url(f"redis://h/0?ssl=true&ssl_ca_certs={redis_extra['ca']}")
    assert plain.ssl and plain.ssl_cert_reqs == "required"
    assert plain.redis_kwargs()["ssl_ca_certs"] == redis_extra["ca"]


def test_tls_files_without_tls_are_refused() -> None:
    with pytest.raises(ValueError, match="need TLS"):
        RedisSettings.from_url("redis://h/0?ssl_ca_certs=/ca.pem")
    with pytest.raises(ValueError, match="ssl_keyfile needs ssl_certfile"):
        RedisSettings.from_url("rediss://h/0?ssl_keyfile=/k.pem")
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        RedisSettings.from_url("rediss://h/0?ssl_cert_reqs=maybe")


def test_a_board_over_tls_with_a_client_certificate_runs_jobs(redis_tls_url: str) -> None:
    with jb.connect(redis_tls_url) as board:
        assert isinstance(board, RedisJobBoard)
        job = board.post("over-tls")
        claimed = board.claim_next("worker")
        assert claimed is not None and claimed.uuid == job.uuid
        board.consume(claimed, "worker")
        assert job.state.name == "COMPLETE"


def test_a_wrong_ca_says_so_in_one_line(redis_tls_url: str, redis_extra: dict[str, Any],
                                        tmp_path: Path) -> None:
    url = _with(redis_tls_url, ssl_ca_certs=redis_extra["other_ca"])
    error = _failure(url)
    assert isinstance(error, errors.BoardUnavailable)
    text = _one_line_without(error)
    assert "CERTIFICATE_VERIFY_FAILED" in text and "ssl_ca_certs" in text
    assert "ssl_ca_certs" in _cli_error(url, tmp_path)


def test_a_missing_client_certificate_says_so_in_one_line(
        redis_tls_url: str, tmp_path: Path) -> None:
    url = _with(redis_tls_url, ssl_certfile=None, ssl_keyfile=None)
    error = _failure(url)
    assert isinstance(error, errors.BoardUnavailable)
    text = _one_line_without(error)
    assert "ssl_certfile" in text and f":{urlsplit(url).port}" in text
    assert "ssl_certfile" in _cli_error(url, tmp_path)


def test_a_client_certificate_from_another_ca_is_refused_in_one_line(
        redis_tls_url: str, redis_extra: dict[str, Any]) -> None:
    url = _with(redis_tls_url, ssl_certfile=redis_extra["other_cert"],
                ssl_keyfile=redis_extra["other_key"])
    text = _one_line_without(_failure(url))
    assert "ssl_certfile" in text


# -- Sentinel with its own credentials --------------------------------------------------------

def test_sentinel_credentials_are_separate_from_the_masters(
        redis_sentinel_auth_url: str, redis_extra: dict[str, Any]) -> None:
    settings = RedisSettings.from_url(redis_sentinel_auth_url)
    assert (settings.username, settings.password) == (redis_extra["master_username"],
                                                      redis_extra["master_password"])
    assert (settings.sentinel_username, settings.sentinel_password) == (
        redis_extra["sentinel_username"], redis_extra["sentinel_password"])
    sentinel = settings.sentinel_kwargs()
    assert (sentinel["username"], sentinel["password"]) == (redis_extra["sentinel_username"],
                                                            redis_extra["sentinel_password"])
    for secret in (redis_extra["master_password"], redis_extra["sentinel_password"]):
        assert secret not in repr(settings)


def test_a_board_through_a_password_sentinel_runs_jobs(redis_sentinel_auth_url: str) -> None:
    with jb.connect(redis_sentinel_auth_url) as board:
        job = board.post("through-sentinel")
        claimed = board.claim_next("worker")
        assert claimed is not None and claimed.uuid == job.uuid
        board.consume(claimed, "worker")


def test_a_wrong_sentinel_password_says_so_in_one_line(
        redis_sentinel_auth_url: str, redis_extra: dict[str, Any], tmp_path: Path) -> None:
    url = _with(redis_sentinel_auth_url, sentinel_password="Wr0ngSentinelPW")
    error = _failure(url)
    assert isinstance(error, errors.BoardUnavailable)
    secrets = ("Wr0ngSentinelPW", redis_extra["master_password"])
    text = _one_line_without(error, *secrets)
    assert "refused the Sentinel credentials" in text
    assert f":{redis_extra['sentinel_port']}" in text
    assert "Sentinel credentials" in _cli_error(url, tmp_path, *secrets)


def test_no_sentinel_credentials_names_the_options(
        redis_sentinel_auth_url: str, redis_extra: dict[str, Any]) -> None:
    url = _with(redis_sentinel_auth_url, sentinel_username=None, sentinel_password=None)
    text = _one_line_without(_failure(url), redis_extra["master_password"])
    assert "sentinel_password" in text


def test_the_masters_password_is_not_sent_to_the_sentinel(
        redis_sentinel_auth_url: str, redis_extra: dict[str, Any]) -> None:
    """The master's credentials do not open the Sentinel (nor the reverse): each is used
    only where it belongs."""
    url = _with(redis_sentinel_auth_url, sentinel_username=redis_extra["master_username"],
                sentinel_password=redis_extra["master_password"])
    assert "Sentinel credentials" in _one_line_without(_failure(url),
                                                       redis_extra["master_password"])


def test_a_wrong_master_password_behind_a_good_sentinel_says_so(
        redis_sentinel_auth_url: str, redis_extra: dict[str, Any]) -> None:
    good = redis_extra["master_password"]
    url = redis_sentinel_auth_url.replace(f":{good}@", ":Wr0ngMasterPW@")
    error = _failure(url)
    text = _one_line_without(error, "Wr0ngMasterPW", redis_extra["sentinel_password"])
    assert "refused the board's credentials" in text
