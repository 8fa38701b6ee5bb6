"""Flow patterns: ``LinearFlow``, ``UnorderedFlow`` and ``GraphFlow``, freely nested.

A flow is a definition only: it does no I/O. An engine compiles it into a graph of atoms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self, Union

from legato import errors
from legato.flow.atom import Atom
from legato.flow.retry import Retry

__all__ = ["Flow", "GraphFlow", "LinearFlow", "Node", "UnorderedFlow"]

Node = Union[Atom, "Flow"]


class Flow:
    """Base of the patterns: a named, ordered collection of atoms and subflows.

    Args:
        name: the flow's name (stored as the flow detail's name).
        retry: a retry controller whose scope is this flow's atoms (see ``legato.flow.retry``).
    """

    def __init__(self, name: str, *, retry: Retry | None = None) -> None:
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry, not {retry!r}")
        self.name = name
        self.retry = retry
        self.children: list[Node] = []

    def add(self, *items: Node) -> Self:
        """Append atoms or subflows; return the flow (so calls chain)."""
        for item in items:
            if not isinstance(item, (Atom, Flow)):
                raise TypeError(f"a flow holds atoms and flows, not {item!r}")
            if isinstance(item, Retry):
                raise TypeError(f"{item!r}: attach retries with Flow(..., retry=...)")
            self.children.append(item)
        return self

    def iter_atoms(self) -> Iterator[Atom]:
        """Every atom inside, depth first, retries before their scope."""
        if self.retry is not None:
            yield self.retry
        for child in self.children:
            if isinstance(child, Flow):
                yield from child.iter_atoms()
            else:
                yield child

    @property
    def provides(self) -> frozenset[str]:
        """Every name some atom inside provides."""
        names: set[str] = set()
        for atom in self.iter_atoms():
            names |= atom.provides
        return frozenset(names)

    @property
    def requires(self) -> frozenset[str]:
        """Names atoms inside require that no atom inside provides."""
        names: set[str] = set()
        for atom in self.iter_atoms():
            names |= atom.requires
        return frozenset(names - self.provides)

    def __len__(self) -> int:
        return len(self.children)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.children)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({len(self)} children)>"


class LinearFlow(Flow):
    """Runs its children one after another, in the order added."""


class UnorderedFlow(Flow):
    """Runs its children in no particular order (in parallel with a parallel engine).

    Children must not depend on each other's results.
    """


class GraphFlow(Flow):
    """Orders its children by what they require and provide, plus explicit ``link``s.

    A child that requires a name another child provides runs after it. Cycles raise
    ``CompilationError`` and several children providing one name that a child requires raise
    ``AmbiguousDependency``, when the engine compiles the flow (before anything runs).
    """

    def __init__(self, name: str, *, retry: Retry | None = None) -> None:
        super().__init__(name, retry=retry)
        self.links: list[tuple[Node, Node, dict[str, Any]]] = []

    def link(self, before: Node, after: Node, **meta: Any) -> Self:
        """Make ``after`` run after ``before`` (both children of this flow)."""
        for node in (before, after):
            if not any(node is child for child in self.children):
                raise errors.CompilationError(
                    f"cannot link {node!r}: not a child of graph flow {self.name!r}")
        if before is after:
            raise errors.CompilationError(f"cannot link {before!r} to itself")
        self.links.append((before, after, dict(meta)))
        return self
