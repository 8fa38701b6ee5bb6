"""The public surface: __all__ is accurate and every error derives from the root."""

from __future__ import annotations

import inspect

import legato
from legato import errors


def test_all_names_exist() -> None:
    for name in legato.__all__:
        assert hasattr(legato, name), name


def test_every_error_derives_from_root() -> None:
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, Exception) and obj.__module__ == errors.__name__]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, errors.LegatoError), cls


def test_error_tree_is_drawn_in_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name
