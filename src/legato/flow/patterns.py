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
        """Names the flow needs from the store: what atoms inside require that no atom running
        before them provides. The flow's retry runs before every child, so what it provides is
        there for all of them; how children subtract what others provide depends on the pattern
        (``_children_requires``). An atom that both requires and provides a name needs it."""
        names = self._children_requires()
        if self.retry is not None:
            names = (names - self.retry.provides) | self.retry.requires
        return frozenset(names)

    def _children_requires(self) -> set[str]:
        """What the children need that no other child provides to them (none does, for an
        unordered flow: its children run in no particular order)."""
        names: set[str] = set()
        for child in self.children:
            names |= child.requires
        return names

    def __len__(self) -> int:
        return len(self.children)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.children)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({len(self)} children)>"


class LinearFlow(Flow):
    """Runs its children one after another, in the order added."""

    def _children_requires(self) -> set[str]:
        """A child's needs are met only by children added before it."""
        names: set[str] = set()
        provided: set[str] = set()
        for child in self.children:
            names |= child.requires - provided
            provided |= child.provides
        return names


class UnorderedFlow(Flow):
    """Runs its children in no particular order (in parallel with a parallel engine).

    Children must not depend on each other's results.
    """


class GraphFlow(Flow):
    """Orders its children by what they require and provide, plus explicit ``link``s.

    A child that requires a name another child provides runs after it. ``add`` and ``link``
    raise ``DependencyFailure`` for the child or link that would close a cycle, and leave the
    flow as it was (as TaskFlow's graph flow does). Several children providing one name that a
    child requires raise ``AmbiguousDependency`` when the engine compiles the flow (before
    anything runs).
    """

    def __init__(self, name: str, *, retry: Retry | None = None) -> None:
        super().__init__(name, retry=retry)
        self.links: list[tuple[Node, Node, dict[str, Any]]] = []

    def add(self, *items: Node) -> Self:
        """Append atoms or subflows; return the flow (so calls chain).

        Raises:
            DependencyFailure: what the items require and provide closes a cycle (nothing
                is added then).
        """
        count = len(self.children)
        super().add(*items)
        try:
            self._check_acyclic(f"adding {', '.join(repr(i.name) for i in items)}")
        except errors.DependencyFailure:
            del self.children[count:]
            raise
        return self

    def link(self, before: Node, after: Node, **meta: Any) -> Self:
        """Make ``after`` run after ``before`` (both children of this flow).

        Raises:
            CompilationError: either is not a child, or both are the same.
            DependencyFailure: ``after`` already runs before ``before`` (the link is not
                kept).
        """
        for node in (before, after):
            if not any(node is child for child in self.children):
                raise errors.CompilationError(
                    f"cannot link {node!r}: not a child of graph flow {self.name!r}")
        if before is after:
            raise errors.CompilationError(f"cannot link {before!r} to itself")
        self.links.append((before, after, dict(meta)))
        try:
            self._check_acyclic(f"linking {before.name!r} -> {after.name!r}")
        except errors.DependencyFailure:
            self.links.pop()
            raise
        return self

    def _preds(self) -> list[set[int]]:
        """Each child's direct predecessors (by position): through ``link``s and the edges
        implied by what it needs (requires or optional) and another child provides, as the
        compiler draws them."""
        children = self.children
        preds: list[set[int]] = [set() for _ in children]
        index = {id(child): i for i, child in enumerate(children)}
        for before, after, _ in self.links:
            preds[index[id(after)]].add(index[id(before)])
        provided = [child.provides for child in children]
        for i, child in enumerate(children):
            needed = _needed(child) - provided[i]
            if needed:
                preds[i] |= {j for j, names in enumerate(provided)
                             if j != i and names & needed}
        return preds

    def _check_acyclic(self, doing: str) -> None:
        preds = self._preds()
        # Kahn's algorithm: what is never freed of predecessors sits on (or after) a cycle.
        waiting = [len(p) for p in preds]
        succs: list[list[int]] = [[] for _ in preds]
        for i, ps in enumerate(preds):
            for j in ps:
                succs[j].append(i)
        ready = [i for i, n in enumerate(waiting) if n == 0]
        while ready:
            for j in succs[ready.pop()]:
                waiting[j] -= 1
                if waiting[j] == 0:
                    ready.append(j)
        stuck = [self.children[i].name for i, n in enumerate(waiting) if n]
        if stuck:
            raise errors.DependencyFailure(
                f"graph flow {self.name!r}: {doing} makes a dependency cycle among "
                f"{', '.join(repr(n) for n in stuck)}")

    def _children_requires(self) -> set[str]:
        """A child's needs are met by the children that run before it: its ancestors."""
        children = self.children
        preds = self._preds()
        provided = [child.provides for child in children]
        names: set[str] = set()
        for i, child in enumerate(children):
            ancestors, todo = set(), list(preds[i])
            while todo:
                j = todo.pop()
                if j not in ancestors:
                    ancestors.add(j)
                    todo.extend(preds[j])
            met: set[str] = set()
            for j in ancestors - {i}:
                met |= provided[j]
            names |= child.requires - met
        return names


def _needed(node: Node) -> set[str]:
    """Every name atoms in ``node`` require or use when available (the compiler's edges)."""
    atoms = node.iter_atoms() if isinstance(node, Flow) else (node,)
    names: set[str] = set()
    for atom in atoms:
        names |= atom.requires | atom.optional
    return names
