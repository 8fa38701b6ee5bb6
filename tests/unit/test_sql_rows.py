"""JSON columns of SQL persistence rows (``legato.persistence.sql._rows``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from legato import errors
from legato.persistence.models import TaskDetail
from legato.persistence.sql import _rows


@pytest.mark.parametrize("value", [{"a": [1, 2.5, "é", None]}, "x", 1.0, [], {"k": {"z": 1}}])
def test_values_are_compact_json(value: Any) -> None:
    assert _rows.dumps(value, "results of atom", "t") == json.dumps(
        value, allow_nan=False, separators=(",", ":"))
    assert _rows.dumps(None, "results of atom", "t") is None


@pytest.mark.parametrize("value", [float("nan"), object()])
def test_a_value_that_is_not_json_names_its_atom(value: Any) -> None:
    atom = TaskDetail("fetch")
    atom.results = value
    with pytest.raises(errors.SerializationError, match="results of atom 'fetch' is not JSON"):
        _rows.atom_row(atom)
