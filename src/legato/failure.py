"""``Failure``: an exception captured so that it can be stored, loaded and matched later.

A failure keeps the exception's type names (its whole MRO, as ``"module.QualName"`` strings), its
message, its traceback text and its causes (``__cause__``/``__context__`` chain). It serialises to
a versioned JSON dict and back. A failure loaded from a dict has no live exception, and loading it
never imports the exception's module: ``check()`` matches by name.
"""

from __future__ import annotations

import traceback as tb_module
from collections.abc import Iterator
from typing import Any

from legato import errors

__all__ = ["FORMAT_VERSION", "Failure"]

#: Version of the dict layout written by ``Failure.to_dict``.
FORMAT_VERSION = 1

#: How deep a cause chain is recorded (a guard against pathological chains).
_MAX_CAUSES = 8


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Failure:
    """A captured exception.

    Build one with ``Failure.from_exception(exc)`` or ``Failure.from_dict(data)``.

    Attributes:
        exception: the live exception, or None for a failure loaded from a dict.
        exc_type_names: the exception class and its bases, most derived first.
        message: ``str(exception)``.
        traceback_str: the formatted traceback (may be empty).
        causes: the failures this one was raised from, nearest first.
    """

    __slots__ = ("causes", "exc_type_names", "exception", "message", "traceback_str")

    def __init__(self, exception: BaseException | None = None, *,
                 exc_type_names: tuple[str, ...] = (), message: str = "",
                 traceback_str: str = "", causes: tuple[Failure, ...] = ()) -> None:
        self.exception = exception
        self.exc_type_names = exc_type_names
        self.message = message
        self.traceback_str = traceback_str
        self.causes = causes

    @classmethod
    def from_exception(cls, exc: BaseException, *, _depth: int = 0) -> Failure:
        """Capture ``exc`` with its traceback and its chain of causes."""
        names = tuple(_type_name(c) for c in type(exc).__mro__ if c is not object)
        text = "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__,
                                                  chain=False))
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        causes: tuple[Failure, ...] = ()
        if cause is not None and _depth < _MAX_CAUSES:
            first = cls.from_exception(cause, _depth=_depth + 1)
            causes = (first, *first.causes)
        return cls(exc, exc_type_names=names, message=str(exc), traceback_str=text,
                   causes=causes)

    # -- matching --------------------------------------------------------------------------

    @property
    def exception_type_name(self) -> str:
        """The exception's own class name (``"builtins.ValueError"``)."""
        return self.exc_type_names[0] if self.exc_type_names else "builtins.Exception"

    def check(self, *exc_types: type[BaseException] | str) -> type[BaseException] | str | None:
        """Return the first of ``exc_types`` this failure is an instance of, else None.

        A type matches by its ``module.QualName``; a string matches a full dotted name, or, with
        no dot in it, a bare class name. Works on failures loaded from dicts, without imports.
        """
        for wanted in exc_types:
            if isinstance(wanted, str):
                if "." in wanted:
                    if wanted in self.exc_type_names:
                        return wanted
                elif any(n.rsplit(".", 1)[-1] == wanted for n in self.exc_type_names):
                    return wanted
            elif _type_name(wanted) in self.exc_type_names:
                return wanted
        return None

    def reraise(self) -> None:
        """Raise the live exception; a loaded failure raises ``WrappedFailure([self])``."""
        if self.exception is not None:
            raise self.exception
        raise errors.WrappedFailure([self])

    def iter_causes(self) -> Iterator[Failure]:
        return iter(self.causes)

    # -- (de)serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``{"version": 1, ...}``); causes are nested flat."""
        return {
            "version": FORMAT_VERSION,
            "exc_type_names": list(self.exc_type_names),
            "message": self.message,
            "traceback": self.traceback_str,
            "causes": [c._own_dict() for c in self.causes],
        }

    def _own_dict(self) -> dict[str, Any]:
        return {"exc_type_names": list(self.exc_type_names), "message": self.message,
                "traceback": self.traceback_str}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        """Rebuild a failure written by ``to_dict``.

        Raises:
            ValueError: the dict is not a failure, or of a version this Legato cannot read.
        """
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a version {FORMAT_VERSION} failure dict: {data!r:.200}")
        causes = tuple(
            cls(exc_type_names=tuple(c.get("exc_type_names", ())),
                message=c.get("message", ""), traceback_str=c.get("traceback", ""))
            for c in data.get("causes", ())
        )
        return cls(exc_type_names=tuple(data.get("exc_type_names", ())),
                   message=data.get("message", ""), traceback_str=data.get("traceback", ""),
                   causes=causes)

    # -- comparisons and display -----------------------------------------------------------

    def matches(self, other: Failure) -> bool:
        """True if both describe the same exception (types and message)."""
        return (self.exc_type_names == other.exc_type_names
                and self.message == other.message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Failure):
            return NotImplemented
        return (self.matches(other) and self.traceback_str == other.traceback_str
                and self.causes == other.causes)

    def __hash__(self) -> int:
        return hash((self.exc_type_names, self.message))

    def __str__(self) -> str:
        return f"{self.exception_type_name.rsplit('.', 1)[-1]}: {self.message}"

    def __repr__(self) -> str:
        return f"Failure({self.exception_type_name}: {self.message!r})"
