"""Checks on the SQL URLs the SQL jobboard and SQL persistence are given, before any driver sees
them: a SQLite URL with two slashes, a server URL naming no database, and query options Legato
does not pass on each give one clear error instead of a driver's (or none at all).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

__all__ = ["DRIVER_OPTIONS", "check_sql_url", "make_sqlite_folder", "sqlite_file"]

#: The query options a URL may carry, per database: they go to the driver as they are (libpq's
#: connection parameters, PyMySQL's ``connect`` arguments). Anything else is refused.
DRIVER_OPTIONS: dict[str, frozenset[str]] = {
    "postgresql": frozenset({
        "application_name", "channel_binding", "client_encoding", "connect_timeout",
        "gssencmode", "host", "hostaddr", "keepalives", "keepalives_count", "keepalives_idle",
        "keepalives_interval", "options", "passfile", "password", "port", "service",
        "sslcert", "sslcrl", "sslkey", "sslmode", "sslpassword", "sslrootcert",
        "target_session_attrs", "tcp_user_timeout", "user"}),
    "mysql": frozenset({
        "charset", "connect_timeout", "read_timeout", "write_timeout", "ssl_ca", "ssl_cert",
        "ssl_key", "ssl_verify_cert", "ssl_verify_identity", "unix_socket"}),
    "sqlite": frozenset(),
}
DRIVER_OPTIONS["mariadb"] = DRIVER_OPTIONS["mysql"]


def check_sql_url(url: sa.URL, what: str, *, shown: str | None = None) -> None:
    """Refuse a URL whose mistake a driver would report obscurely, or not at all.

    Args:
        url: the parsed URL.
        what: what it is for, in messages (``"board"``, ``"persistence"``).
        shown: the URL as the user wrote it (password hidden), for messages.

    Raises:
        ValueError: naming the mistake: a SQLite URL with a host (``sqlite://x.db``: two
            slashes), a PostgreSQL or MySQL URL without a database, or a query option
            not in ``DRIVER_OPTIONS``.
    """
    backend = url.get_backend_name()
    shown = shown or url.render_as_string(hide_password=True)
    if backend == "sqlite":
        if url.host:
            raise ValueError(
                f"{what} URL {shown!r} has two slashes, so {url.host!r} is read as a host: "
                f"write sqlite:///{url.host} (three slashes) for a file relative to the current "
                "directory, or sqlite:////path/to/file.db (four) for an absolute path")
    elif not url.database:
        raise ValueError(f"{what} URL {shown!r} names no database: write it after the host, "
                         f"e.g. {url.drivername.split('+', 1)[0]}://user@host/DATABASE")
    allowed = DRIVER_OPTIONS.get(backend)
    if allowed is None:
        return
    unknown = sorted(set(url.query) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) if allowed else "none"
        raise ValueError(f"unknown {what} URL option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)} for {backend}; it takes: {takes}")


def sqlite_file(url: sa.URL) -> str | None:
    """The file a SQLite URL names (None for another database, or an in-memory one)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def make_sqlite_folder(url: sa.URL) -> None:
    """Create the folder of the SQLite file ``url`` names, if it is missing (SQLite creates
    the file, never its folder).

    Raises:
        OSError: the folder cannot be created; the message names the file.
    """
    path = sqlite_file(url)
    if path is None or path.startswith("file:"):
        return
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create the folder {str(folder)!r} of SQLite file "
                      f"{path!r}: {exc.strerror or exc}") from exc
