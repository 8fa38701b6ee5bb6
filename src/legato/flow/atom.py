"""``Atom``: the unit a flow is made of (a task or a retry controller).

An atom declares what it needs and what it gives:

- ``requires``: stored names its main method takes, inferred from the method's signature;
  ``rebind`` maps argument names to other stored names, ``inject`` gives atom-local constants,
  and arguments with defaults are optional (used when some atom or the store provides them).
- ``provides``: the names its result is stored under. A string names the whole result; a tuple
  or list names the result's items by position; a set names keys of a returned mapping; a dict
  maps stored names to keys of a returned mapping.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Atom", "accepted_kwargs", "extract_result"]

#: Marker key meaning "the whole result" in ``Atom.provides_map``.
WHOLE: Any = None


def _signature_args(fn: Callable[..., Any], skip: Iterable[str]) -> tuple[list[tuple[str, bool]],
                                                                          bool]:
    """Return ``[(name, has_default)]`` for the named parameters of ``fn`` and whether it takes
    ``**kwargs``."""
    # Bound methods are new objects on each access: cache by the underlying function.
    target = getattr(fn, "__func__", fn)
    bound = target is not fn
    try:
        params, var_kw = _cached_signature(target, tuple(skip))
    except TypeError:  # unhashable callable
        params, var_kw = _uncached_signature(target, tuple(skip))
    if bound and params and params[0][0] in ("self", "cls"):
        params = params[1:]
    return list(params), var_kw


@functools.lru_cache(maxsize=1024)
def _cached_signature(fn: Callable[..., Any], skip: tuple[str, ...],
                      ) -> tuple[tuple[tuple[str, bool], ...], bool]:
    return _uncached_signature(fn, skip)


def _uncached_signature(fn: Callable[..., Any], skip: tuple[str, ...],
                        ) -> tuple[tuple[tuple[str, bool], ...], bool]:
    skipped = set(skip)
    args: list[tuple[str, bool]] = []
    var_kw = False
    for param in inspect.signature(fn).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            var_kw = True
        elif param.kind is param.VAR_POSITIONAL or param.name in skipped:
            continue
        elif param.kind is param.POSITIONAL_ONLY:
            raise ValueError(f"{fn!r}: positional-only parameter {param.name!r} is not supported")
        else:
            args.append((param.name, param.default is not param.empty))
    return tuple(args), var_kw


@functools.lru_cache(maxsize=512)
def accepted_kwargs(fn: Callable[..., Any]) -> frozenset[str] | None:
    """Names of keyword arguments ``fn`` accepts, or None if it takes ``**kwargs``."""
    names, var_kw = _signature_args(fn, ())
    return None if var_kw else frozenset(n for n, _ in names)


def extract_result(result: Any, key: Any) -> Any:
    """Pick one named value out of an atom's result (see ``Atom.provides_map``)."""
    if key is WHOLE:
        return result
    return result[key]


def _provides_map(provides: Any) -> dict[str, Any]:
    if provides is None:
        return {}
    if isinstance(provides, str):
        return {provides: WHOLE}
    if isinstance(provides, (tuple, list)):
        return {name: index for index, name in enumerate(provides)}
    if isinstance(provides, (set, frozenset)):
        return {name: name for name in sorted(provides)}
    if isinstance(provides, Mapping):
        return dict(provides)
    raise TypeError(f"provides must be a str, tuple, list, set or dict, not {provides!r}")


class Atom:
    """Base of tasks and retries. Subclasses name their main method in ``_main_method``.

    Args:
        name: unique within a flow; defaults to the class's dotted name.
        provides: names the result is stored under (see the module docstring).
        requires: extra stored names passed as keyword arguments (the method needs ``**kwargs``).
        rebind: argument name -> stored name (dict), or stored names by argument position (list).
        inject: argument name -> constant value given to this atom only.
        version: the atom's own version string, stored with its detail.
    """

    #: The method whose signature defines ``requires``.
    _main_method = "execute"
    #: Parameters of the main method the engine fills itself.
    _engine_args: tuple[str, ...] = ()
    #: Used when ``provides`` is not given.
    default_provides: Any = None

    def __init__(self, name: str | None = None, *, provides: Any = None,
                 requires: Iterable[str] = (), rebind: Mapping[str, str] | list[str] | None = None,
                 inject: Mapping[str, Any] | None = None, version: str | None = None) -> None:
        cls = type(self)
        self.name = name or f"{cls.__module__}.{cls.__qualname__}"
        self.version = version
        self.provides_spec = provides if provides is not None else self.default_provides
        self.provides_map = _provides_map(self.provides_spec)
        self.inject: dict[str, Any] = dict(inject or {})
        self.rebind_spec = rebind
        self.requires_spec = tuple(requires)
        self.args, self.optional_args = self._map_args(requires, rebind)

    def _signature_target(self) -> Callable[..., Any]:
        return getattr(self, self._main_method)  # type: ignore[no-any-return]

    def _map_args(self, extra: Iterable[str], rebind: Mapping[str, str] | list[str] | None,
                  ) -> tuple[dict[str, str], dict[str, str]]:
        params, var_kw = _signature_args(self._signature_target(), self._engine_args)
        if not extra and rebind is None and not self.inject:
            # The common case: every parameter is read under its own name.
            return ({arg: arg for arg, has_default in params if not has_default},
                    {arg: arg for arg, has_default in params if has_default})
        names = [n for n, _ in params]
        extra = [e for e in extra if e not in names]
        if extra and not var_kw:
            raise ValueError(f"atom {self.name!r}: requires {extra} but its "
                             f"{self._main_method}() takes no **kwargs")
        if isinstance(rebind, list):
            if len(rebind) > len(names) + len(extra):
                raise ValueError(f"atom {self.name!r}: rebind has more names than arguments")
            rebind = dict(zip([*names, *extra], rebind, strict=False))
        rebind = dict(rebind or {})
        unknown = set(rebind) - set(names) - set(extra)
        if unknown and not var_kw:
            raise ValueError(f"atom {self.name!r}: rebind names unknown arguments "
                             f"{sorted(unknown)}")
        required: dict[str, str] = {}
        optional: dict[str, str] = {}
        for arg, has_default in [*params, *((e, False) for e in extra),
                                 *((u, False) for u in sorted(unknown))]:
            if arg in self.inject:
                continue
            (optional if has_default else required)[arg] = rebind.get(arg, arg)
        return required, optional

    @property
    def provides(self) -> frozenset[str]:
        """Every name this atom's result is stored under."""
        return frozenset(self.provides_map)

    @property
    def requires(self) -> frozenset[str]:
        """Stored names this atom cannot run without."""
        return frozenset(self.args.values())

    @property
    def optional(self) -> frozenset[str]:
        """Stored names this atom uses when available."""
        return frozenset(self.optional_args.values())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
