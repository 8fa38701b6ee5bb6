"""The SQL and Redis backends: their resource files ship, and they use their drivers' public
APIs only."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import legato

SRC = Path(legato.__file__).parent

#: The SQL and Redis backends' modules.
BACKENDS = sorted(
    [
        *(SRC / "_sql").glob("*.py"),
        *(SRC / "jobboard" / "redis").glob("*.py"),
        *(SRC / "jobboard" / "sql").rglob("*.py"),
        *(SRC / "persistence" / "sql").rglob("*.py"),
        SRC / "_sqlurl.py",
    ]
)

#: Underscore names that are documented public API: SQLAlchemy's ``Row._mapping`` (named so to
#: stay clear of column names) and named tuples' ``_replace`` (``urllib.parse`` results).
PUBLIC_UNDERSCORE = {"_mapping", "_replace"}

#: ``x._name`` where ``x`` is not ``self``/``cls``/``super()`` nor a Legato module alias.
_ACCESS = re.compile(r"(?<![\w.])(?!self\b|cls\b)([A-Za-z_][\w]*(?:\(\))?)\._([a-z]\w*)")
_LEGATO_ALIASES = {"legato", "sql_engine", "_engine", "_migrate", "_rows", "base", "super()"}


def test_the_backends_use_no_private_name_of_a_driver() -> None:
    found = []
    for path in BACKENDS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for owner, name in _ACCESS.findall(code):
                if owner in _LEGATO_ALIASES or f"_{name}" in PUBLIC_UNDERSCORE:
                    continue
                if owner.startswith("_") and not code.lstrip().startswith(("from", "import")):
                    continue  # a private name of Legato's own (a module-level helper)
                found.append(f"{path.relative_to(SRC)}:{number}: {owner}._{name}")
    assert not found, found


def test_the_scanner_sees_a_private_access() -> None:
    assert _ACCESS.findall("conn._read_timeout = 5") == [("conn", "read_timeout")]
    assert _ACCESS.findall("self._engine.dispose()") == []


def test_the_backends_resource_files_ship_with_the_package() -> None:
    lua = importlib.resources.files("legato.jobboard.redis") / "lua"
    assert {"common.lua", "consume_and_claim_next.lua"} <= {p.name for p in lua.iterdir()}
    for package in ("legato.jobboard.sql", "legato.persistence.sql"):
        migrations = importlib.resources.files(package) / "migrations"
        assert (migrations / "env.py").is_file()
        assert any(p.name.endswith(".py") for p in (migrations / "versions").iterdir())
