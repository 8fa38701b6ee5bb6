"""Failure: capture, JSON round trip, matching without imports, reraise."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from legato import errors
from legato.failure import Failure


class CustomError(KeyError):
    pass


def _capture(exc: BaseException) -> Failure:
    try:
        raise exc
    except BaseException as caught:
        return Failure.from_exception(caught)


def test_captures_types_message_traceback() -> None:
    f = _capture(CustomError("bad key"))
    assert f.exc_type_names[0] == f"{__name__}.CustomError"
    assert "builtins.KeyError" in f.exc_type_names
    assert "builtins.LookupError" in f.exc_type_names
    assert "bad key" in f.message
    assert "raise exc" in f.traceback_str


def test_round_trip_through_json_keeps_check() -> None:
    f = _capture(CustomError("bad key"))
    data = json.loads(json.dumps(f.to_dict()))
    assert data["version"] == 1
    loaded = Failure.from_dict(data)
    assert loaded.exception is None
    assert loaded.check(LookupError) is LookupError
    assert loaded.check(ValueError) is None
    assert loaded.check(f"{__name__}.CustomError") == f"{__name__}.CustomError"
    assert loaded.check("CustomError") == "CustomError"
    assert loaded.matches(f)
    assert loaded == Failure.from_dict(data)


def test_causes_are_chained() -> None:
    try:
        try:
            raise OSError("disk")
        except OSError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        f = Failure.from_exception(exc)
    assert [c.message for c in f.causes] == ["disk"]
    loaded = Failure.from_dict(f.to_dict())
    assert loaded.causes[0].check(OSError) is OSError


def test_reraise_live_and_loaded() -> None:
    f = _capture(ValueError("v"))
    with pytest.raises(ValueError, match="v"):
        f.reraise()
    with pytest.raises(errors.WrappedFailure) as info:
        Failure.from_dict(f.to_dict()).reraise()
    assert info.value.check(ValueError) is ValueError


def test_unknown_version_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        Failure.from_dict({"version": 99, "exc_type_names": []})


def test_loading_never_imports_the_exception_module() -> None:
    data = {"version": 1, "exc_type_names": ["legato_never_imported_mod.Boom",
                                             "builtins.Exception"],
            "message": "x", "traceback": "", "causes": []}
    code = (
        "import json, sys\n"
        "from legato.failure import Failure\n"
        f"f = Failure.from_dict(json.loads({json.dumps(json.dumps(data))}))\n"
        "assert f.check('legato_never_imported_mod.Boom')\n"
        "assert f.check(Exception) is Exception\n"
        "assert 'legato_never_imported_mod' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "ok"
