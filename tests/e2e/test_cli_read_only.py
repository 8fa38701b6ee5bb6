"""Read-only commands on a database the caller may only read: no schema upgrade is attempted
when the schema is current (a PostgreSQL role with SELECT alone on the test schema)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

SCRIPT = Path(sys.executable).with_name("legato")
LEGATO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "legato.cli"]


def run(cwd: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(LEGATO_BOARD=url, LEGATO_PERSISTENCE=url)
    return subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120, check=False)


@pytest.fixture
def reader_url(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` for a new role that may only SELECT in the test's schema."""
    import psycopg

    parts = urlsplit(postgres_url)
    role = f"legato_ro_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(parts._replace(query=""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def grant_select(postgres_url: str, reader: str) -> None:
    import psycopg

    parts = urlsplit(postgres_url)
    schema = parse_qs(parts.query)["options"][0].split("=", 1)[1]
    role = urlsplit(reader).username
    with psycopg.connect(urlunsplit(parts._replace(query="")), autocommit=True) as conn:
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')


def test_read_only_commands_on_a_select_only_role(postgres_url: str, reader_url: str,
                                                  tmp_path: Path) -> None:
    store = json.dumps({"job_name": "j", "log_path": str(tmp_path / "effects.jsonl")})
    posted = run(tmp_path, postgres_url, "post", "legato.demo:demo_flow", "--arg", "1",
                 "--store", store)
    assert posted.returncode == 0, posted.stderr
    job = posted.stdout.strip()
    grant_select(postgres_url, reader_url)
    for args in (["jobs", "list"], ["jobs", "list", "--trash"], ["jobs", "show", job],
                 ["flow", "show", job], ["conductors"]):
        result = run(tmp_path, reader_url, "--json", *args)
        assert result.returncode == 0, (args, result.stderr)
    [row] = json.loads(run(tmp_path, reader_url, "--json", "jobs", "list").stdout)
    assert row["uuid"] == job
    refused = run(tmp_path, reader_url, "jobs", "cancel", job)  # a write: one clear line
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
