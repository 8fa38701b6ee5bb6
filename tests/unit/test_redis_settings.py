"""RedisSettings: TLS and Sentinel options from the URL, and passwords never in its repr."""

from __future__ import annotations

import pytest

from legato.jobboard.redis import RedisSettings


def test_passwords_are_not_in_the_repr() -> None:
    settings = RedisSettings.from_url(
        "redis+sentinel://u:MasterPW@s1:26379/svc/0?sentinel_username=w"
        "&sentinel_password=SentinelPW")
    assert (settings.password, settings.sentinel_password) == ("MasterPW", "SentinelPW")
    assert "MasterPW" not in repr(settings) and "SentinelPW" not in repr(settings)


def test_sentinels_get_their_own_credentials_and_the_masters_tls() -> None:
    settings = RedisSettings.from_url(
        "redis+sentinel://u:MasterPW@s1:26379/svc/0?ssl=true&ssl_ca_certs=/ca.pem"
        "&sentinel_username=w&sentinel_password=SentinelPW")
    sentinel = settings.sentinel_kwargs()
    assert (sentinel["username"], sentinel["password"]) == ("w", "SentinelPW")
    assert sentinel["ssl"] is True and sentinel["ssl_ca_certs"] == "/ca.pem"
    master = settings.redis_kwargs()
    assert (master["username"], master["password"]) == ("u", "MasterPW")
    plain = RedisSettings.from_url(
        "redis+sentinel://s1:26379/svc/0?ssl=true&ssl_ca_certs=/ca.pem&sentinel_ssl=false")
    assert "ssl" not in plain.sentinel_kwargs()


def test_tls_files_reach_redis_py() -> None:
    kwargs = RedisSettings.from_url(
        "rediss://h:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
        "&ssl_cert_reqs=optional").redis_kwargs()
    assert {k: kwargs[k] for k in ("ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
                                   "ssl_cert_reqs")} == {
        "ssl": True, "ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem", "ssl_cert_reqs": "optional"}
    assert "ssl_ca_certs" not in RedisSettings.from_url("redis://h/0").redis_kwargs()


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown Redis jobboard options: ssl_ca_cert$"):
        RedisSettings.from_url("rediss://h/0?ssl_ca_cert=/ca.pem")


def test_taskflows_sentinel_kwargs_carry_the_sentinel_credentials() -> None:
    """TaskFlow's Redis board takes the Sentinels' credentials in ``sentinel_kwargs``."""
    settings = RedisSettings.from_url(
        "redis+sentinel://s1:26379/svc/0",
        sentinel_kwargs={"username": "w", "password": "SentinelPW", "ssl": False})
    assert (settings.sentinel_username, settings.sentinel_password,
            settings.sentinel_ssl) == ("w", "SentinelPW", False)
    with pytest.raises(ValueError, match="sentinel_kwargs takes"):
        RedisSettings.from_url("redis+sentinel://s1:26379/svc/0",
                               sentinel_kwargs={"socket_timeout": 1})
