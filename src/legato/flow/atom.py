"""``Atom``: the unit a flow is made of (a task or a retry controller).

An atom declares what it needs and what it gives:

- ``requires``: stored names its main method takes, inferred from the method's signature;
  ``rebind`` maps argument names to other stored names, ``inject`` gives atom-local constants
  (keyed by the stored name, after ``rebind``), and arguments with defaults are optional (used
  when some atom or the store provides them). ``revert`` may take arguments of its own, mapped
  the same way (``revert_requires``, ``revert_rebind``); they count in ``requires`` too.
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


def _signature_args(fn: Callable[..., Any], skip: tuple[str, ...],
                    ) -> tuple[tuple[tuple[str, bool], ...], bool]:
    """Return ``((name, has_default), ...)`` for the named parameters of ``fn`` and whether it
    takes ``**kwargs``."""
    # Bound methods are new objects on each access: cache by the underlying function.
    target = getattr(fn, "__func__", fn)
    try:
        params, var_kw = _cached_signature(target, skip)
    except TypeError:  # unhashable callable
        params, var_kw = _uncached_signature(target, skip)
    if target is not fn and params and params[0][0] in ("self", "cls"):
        params = params[1:]
    return params, var_kw


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


@functools.lru_cache(maxsize=1024)
def _method_takes_named_args(cls: type, method: str, skip: tuple[str, ...]) -> bool:
    fn = getattr(cls, method, None)
    if fn is None:
        return False
    names = [name for name, _ in _uncached_signature(fn, skip)[0]]
    return bool(names[1:] if names[:1] in (["self"], ["cls"]) else names)


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
        inject: stored name -> constant value given to this atom only. Keys are the names the
            atom reads, after ``rebind`` (as in TaskFlow): with ``rebind={"x": "y"}``,
            ``inject={"y": 1}`` gives ``x=1``, and ``inject={"x": 1}`` gives nothing.
        version: the atom's own version string, stored with its detail.
        revert_requires: extra stored names passed to ``revert`` (which needs ``**kwargs``).
        revert_rebind: like ``rebind``, for ``revert``'s own arguments; defaults to ``rebind``.
    """

    #: The method whose signature defines ``requires``.
    _main_method = "execute"
    #: Parameters of the main method the engine fills itself.
    _engine_args: tuple[str, ...] = ()
    #: The method undoing the main one, and the parameters of it the engine fills itself.
    _revert_method = "revert"
    _revert_engine_args: tuple[str, ...] = ()
    #: Used when ``provides`` is not given.
    default_provides: Any = None

    def __init__(self, name: str | None = None, *, provides: Any = None,
                 requires: Iterable[str] = (), rebind: Mapping[str, str] | list[str] | None = None,
                 inject: Mapping[str, Any] | None = None, version: str | None = None,
                 revert_requires: Iterable[str] = (),
                 revert_rebind: Mapping[str, str] | list[str] | None = None) -> None:
        cls = type(self)
        self.name = name or f"{cls.__module__}.{cls.__qualname__}"
        self.version = version
        self.provides_spec = provides if provides is not None else self.default_provides
        self.provides_map = _provides_map(self.provides_spec)
        self.inject: dict[str, Any] = dict(inject or {})
        self.rebind_spec = rebind
        self.requires_spec = tuple(requires)
        self.revert_rebind_spec = revert_rebind
        self.revert_requires_spec = tuple(revert_requires)
        #: argument name -> stored name, for execute's required and optional arguments, and
        #: argument name -> value for those ``inject`` gives.
        self.args, self.optional_args, self.injected_args = self._map_args(
            self._signature_target(), self._engine_args, self.requires_spec, rebind,
            method=self._main_method)
        #: the same for ``revert``'s own arguments (beyond execute's, which it also receives).
        self.revert_args, self.revert_optional_args, self.revert_injected_args = (
            self._map_revert_args())

    def _signature_target(self) -> Callable[..., Any]:
        return getattr(self, self._main_method)  # type: ignore[no-any-return]

    def _revert_signature_target(self) -> Callable[..., Any] | None:
        return getattr(self, self._revert_method, None)

    def _revert_takes_named_args(self) -> bool:
        """Whether ``revert`` names parameters beyond the engine's (cached per class: most
        atoms' reverts take none, and building them stays cheap)."""
        cls: type = type(self)
        return _method_takes_named_args(cls, self._revert_method, self._revert_engine_args)

    def _map_revert_args(self) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        if (not self.revert_requires_spec and self.revert_rebind_spec is None
                and not self._revert_takes_named_args()):
            return {}, {}, {}
        target = self._revert_signature_target()
        if target is None:
            return {}, {}, {}
        rebind = self.revert_rebind_spec
        lenient = rebind is None
        if lenient and isinstance(self.rebind_spec, list):
            # execute's positional rebind, by name: the same conversions apply to revert's
            # arguments of the same names.
            rebind = {**self.args, **self.optional_args}
        elif lenient:
            rebind = self.rebind_spec
        return self._map_args(target, self._revert_engine_args, self.revert_requires_spec,
                              rebind, method=self._revert_method, lenient=lenient)

    def _map_args(self, fn: Callable[..., Any], engine_args: tuple[str, ...],
                  extra: Iterable[str], rebind: Mapping[str, str] | list[str] | None, *,
                  method: str, lenient: bool = False,
                  ) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        """Map ``fn``'s arguments to stored names: ``(required, optional, injected)``. With
        ``lenient``, ``rebind`` names that are not ``fn``'s named arguments are ignored (the
        fallback of revert's mapping to execute's ``rebind``)."""
        params, var_kw = _signature_args(fn, engine_args)
        inject = self.inject
        if not extra and not rebind and not inject:
            # The common case: every parameter is read under its own name.
            return ({arg: arg for arg, has_default in params if not has_default},
                    {arg: arg for arg, has_default in params if has_default}, {})
        names = [n for n, _ in params]
        extra = [e for e in extra if e not in names]
        if extra and not var_kw:
            raise ValueError(f"atom {self.name!r}: requires {extra} but its "
                             f"{method}() takes no **kwargs")
        if isinstance(rebind, list):
            if len(rebind) > len(names) + len(extra):
                raise ValueError(f"atom {self.name!r}: rebind has more names than arguments")
            rebind = dict(zip([*names, *extra], rebind, strict=False))
        rebind = dict(rebind or {})
        unknown = set(rebind) - set(names) - set(extra)
        if lenient:
            unknown = set()
        elif unknown and not var_kw:
            raise ValueError(f"atom {self.name!r}: rebind names unknown arguments "
                             f"{sorted(unknown)} of {method}()")
        required: dict[str, str] = {}
        optional: dict[str, str] = {}
        injected: dict[str, Any] = {}
        for arg, has_default in [*params, *((e, False) for e in extra),
                                 *((u, False) for u in sorted(unknown))]:
            stored = rebind.get(arg, arg)
            if stored in inject:  # TaskFlow keys atom-local values by the name read
                injected[arg] = inject[stored]
            else:
                (optional if has_default else required)[arg] = stored
        return required, optional, injected

    @property
    def provides(self) -> frozenset[str]:
        """Every name this atom's result is stored under."""
        return frozenset(self.provides_map)

    @property
    def requires(self) -> frozenset[str]:
        """Stored names this atom cannot run (or revert) without."""
        if self.revert_args:
            return frozenset(self.args.values()) | frozenset(self.revert_args.values())
        return frozenset(self.args.values())

    @property
    def optional(self) -> frozenset[str]:
        """Stored names this atom uses when available."""
        names = frozenset(self.optional_args.values())
        if self.revert_optional_args:
            names = (names | frozenset(self.revert_optional_args.values())) - self.requires
        return names

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
