"""Flow patterns: ``LinearFlow``, ``UnorderedFlow`` and ``GraphFlow``, freely nested.

A flow is a definition only: it does no I/O. An engine compiles it into a graph of atoms.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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

    The check looks only at what the new child or link can reach (any new cycle passes through
    it), over an index of who provides and who needs each name, kept as children are added: a
    flow built one ``add`` at a time costs about as much as one built with a single call. The
    index holds what each child provided and needed when it was added; a subflow changed
    afterwards is checked again when the engine compiles the flow.
    """

    def __init__(self, name: str, *, retry: Retry | None = None) -> None:
        super().__init__(name, retry=retry)
        self.links: list[tuple[Node, Node, dict[str, Any]]] = []
        self._deps = _DependencyIndex()

    def add(self, *items: Node) -> Self:
        """Append atoms or subflows; return the flow (so calls chain).

        Raises:
            DependencyFailure: what the items require and provide closes a cycle (nothing
                is added then).
        """
        count = len(self.children)
        super().add(*items)
        deps = self._deps
        deps.sync(self.children)
        if deps.cycle_through(range(count, len(self.children))):
            error = self._cycle(f"adding {', '.join(repr(i.name) for i in items)}")
            del self.children[count:]
            deps.truncate(count)
            raise error
        return self

    def link(self, before: Node, after: Node, **meta: Any) -> Self:
        """Make ``after`` run after ``before`` (both children of this flow).

        Raises:
            CompilationError: either is not a child, or both are the same.
            DependencyFailure: ``after`` already runs before ``before`` (the link is not
                kept).
        """
        positions = []
        for node in (before, after):
            at = next((i for i, child in enumerate(self.children) if child is node), None)
            if at is None:
                raise errors.CompilationError(
                    f"cannot link {node!r}: not a child of graph flow {self.name!r}")
            positions.append(at)
        if before is after:
            raise errors.CompilationError(f"cannot link {before!r} to itself")
        deps = self._deps
        deps.sync(self.children)
        if deps.reaches(positions[1], positions[0]):
            raise self._cycle(f"linking {before.name!r} -> {after.name!r}")
        self.links.append((before, after, dict(meta)))
        deps.link(positions[0], positions[1])
        return self

    def _cycle(self, doing: str) -> errors.DependencyFailure:
        """The error for a cycle ``doing`` would close, naming the children on cycles."""
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
        return errors.DependencyFailure(
            f"graph flow {self.name!r}: {doing} makes a dependency cycle among "
            f"{', '.join(repr(n) for n in stuck)}")

    def _preds(self) -> list[set[int]]:
        """Each child's direct predecessors (by position): through ``link``s and the edges
        implied by what it needs (requires or optional) and another child provides, as the
        compiler draws them (from what each child provides and needs now)."""
        children = self.children
        deps = _DependencyIndex()
        deps.sync(children)
        index = {id(child): i for i, child in enumerate(children)}
        for before, after, _ in self.links:
            deps.link(index[id(before)], index[id(after)])
        return [deps.preds(i) for i in range(len(children))]

    def _children_requires(self) -> set[str]:
        """A child's needs are met by the children that run before it: its ancestors. Every
        other provider of a name a child needs (and does not provide itself) is one of its
        direct predecessors, so only a name a child both requires and provides needs the walk
        through its ancestors."""
        children = self.children
        preds = self._preds()
        provided = [child.provides for child in children]
        providers: dict[str, list[int]] = {}
        for j, given in enumerate(provided):
            for name in given:
                providers.setdefault(name, []).append(j)
        names: set[str] = set()
        for i, child in enumerate(children):
            for name in child.requires:
                if name not in provided[i]:
                    if not any(j != i for j in providers.get(name, ())):
                        names.add(name)
                elif not _provided_before(i, name, preds, provided):
                    names.add(name)
        return names


def _provided_before(i: int, name: str, preds: list[set[int]],
                     provided: list[frozenset[str]]) -> bool:
    """Whether an ancestor of child ``i`` provides ``name``."""
    seen: set[int] = set()
    todo = list(preds[i])
    while todo:
        j = todo.pop()
        if j in seen or j == i:
            continue
        if name in provided[j]:
            return True
        seen.add(j)
        todo.extend(preds[j])
    return False


class _DependencyIndex:
    """Who provides and who needs each name among a graph flow's children (by position), and
    the links: the edges the compiler draws, kept as children are added."""

    __slots__ = ("consumers", "link_preds", "link_succs", "needed", "provided", "providers")

    def __init__(self) -> None:
        self.provided: list[frozenset[str]] = []
        self.needed: list[frozenset[str]] = []
        self.providers: dict[str, list[int]] = {}
        self.consumers: dict[str, list[int]] = {}
        self.link_succs: dict[int, list[int]] = {}
        self.link_preds: dict[int, list[int]] = {}

    def sync(self, children: list[Node]) -> None:
        """Index the children added since the last call."""
        for i in range(len(self.provided), len(children)):
            child = children[i]
            provided = frozenset(child.provides)
            needed = frozenset(_needed(child) - provided)
            self.provided.append(provided)
            self.needed.append(needed)
            for name in provided:
                self.providers.setdefault(name, []).append(i)
            for name in needed:
                self.consumers.setdefault(name, []).append(i)

    def truncate(self, count: int) -> None:
        """Forget the children from position ``count`` on (they were taken back)."""
        for i in range(count, len(self.provided)):
            for name in self.provided[i]:
                self.providers[name].remove(i)
            for name in self.needed[i]:
                self.consumers[name].remove(i)
        del self.provided[count:], self.needed[count:]

    def link(self, before: int, after: int) -> None:
        self.link_succs.setdefault(before, []).append(after)
        self.link_preds.setdefault(after, []).append(before)

    def preds(self, i: int) -> set[int]:
        found = {j for name in self.needed[i] for j in self.providers.get(name, ()) if j != i}
        found.update(self.link_preds.get(i, ()))
        return found

    def _succs(self, i: int) -> Iterator[int]:
        for name in self.provided[i]:
            for j in self.consumers.get(name, ()):
                if j != i:
                    yield j
        yield from self.link_succs.get(i, ())

    def cycle_through(self, starts: Iterable[int]) -> bool:
        """Whether a cycle passes through one of the children ``starts`` (a depth-first walk
        from them that finds an edge back into its own path; each child is walked once)."""
        done: set[int] = set()
        for start in starts:
            if start in done:
                continue
            path = {start}
            stack = [(start, self._succs(start))]
            while stack:
                node, succs = stack[-1]
                for j in succs:
                    if j in path:
                        return True
                    if j not in done:
                        path.add(j)
                        stack.append((j, self._succs(j)))
                        break
                else:
                    stack.pop()
                    path.discard(node)
                    done.add(node)
        return False

    def reaches(self, start: int, goal: int) -> bool:
        """Whether a path of one edge or more leads from child ``start`` to child ``goal``."""
        seen: set[int] = set()
        todo = list(self._succs(start))
        while todo:
            j = todo.pop()
            if j == goal:
                return True
            if j not in seen:
                seen.add(j)
                todo.extend(self._succs(j))
        return False


def _needed(node: Node) -> set[str]:
    """Every name atoms in ``node`` require or use when available (the compiler's edges)."""
    atoms = node.iter_atoms() if isinstance(node, Flow) else (node,)
    names: set[str] = set()
    for atom in atoms:
        names |= atom.requires | atom.optional
    return names
