"""The SQL and Redis backends: their resource files ship. (That they use their drivers'
public APIs only is checked for all of ``src/`` by tests/unit/test_layering.py.)"""

from __future__ import annotations

import importlib.resources


def test_the_backends_resource_files_ship_with_the_package() -> None:
    lua = importlib.resources.files("legato.jobboard.redis") / "lua"
    assert {"common.lua", "consume_and_claim_next.lua"} <= {p.name for p in lua.iterdir()}
    for package in ("legato.jobboard.sql", "legato.persistence.sql"):
        migrations = importlib.resources.files(package) / "migrations"
        assert (migrations / "env.py").is_file()
        assert any(p.name.endswith(".py") for p in (migrations / "versions").iterdir())
