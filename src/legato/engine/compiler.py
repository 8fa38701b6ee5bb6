"""Compile a flow into a graph of atoms: order, retry scopes and where each argument comes from.

Everything that can be decided before running is decided here, so that a bad flow fails before
any task runs and the engine's per-atom work is a few dictionary lookups.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Iterable
from typing import Any

from legato import errors
from legato.flow.atom import Atom
from legato.flow.patterns import Flow, GraphFlow, LinearFlow, Node
from legato.flow.retry import Retry

__all__ = ["CompiledAtom", "CompiledFlow", "Scope", "compile_flow"]


@dataclasses.dataclass(eq=False)
class Scope:
    """The atoms one retry controls. ``retry`` is the retry's index; ``members`` the indexes of
    every atom inside (nested scopes included, the retry itself excluded), in run order."""

    retry: int
    parent: Scope | None
    members: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False, slots=True)
class CompiledAtom:
    """One atom placed in the graph.

    Attributes:
        sources: argument name -> ``(provider index, key)`` for arguments another atom provides,
            or ``(None, stored name)`` for arguments read from the store.
        optional: like ``sources``, for optional arguments (resolved at validation).
        revert_sources, revert_optional: the same for ``revert``'s own arguments (empty for
            most atoms: revert receives execute's arguments as well).
    """

    atom: Atom
    name: str
    index: int
    is_retry: bool
    preds: tuple[int, ...] = ()
    succs: tuple[int, ...] = ()
    scope: Scope | None = None
    ancestors: int = 0
    sources: dict[str, tuple[int | None, Any]] = dataclasses.field(default_factory=dict)
    optional: dict[str, tuple[int | None, Any]] = dataclasses.field(default_factory=dict)
    revert_sources: dict[str, tuple[int | None, Any]] = dataclasses.field(default_factory=dict)
    revert_optional: dict[str, tuple[int | None, Any]] = dataclasses.field(
        default_factory=dict)


@dataclasses.dataclass(eq=False)
class CompiledFlow:
    """The flow as the engine runs it: atoms in a valid run order."""

    flow: Flow
    atoms: list[CompiledAtom]
    by_name: dict[str, CompiledAtom]
    scopes: list[Scope]
    #: stored name -> indexes of the atoms providing it
    providers: dict[str, list[int]]


@dataclasses.dataclass
class _Block:
    members: list[int]
    sources: list[int]
    sinks: list[int]


class _Builder:
    def __init__(self) -> None:
        self.atoms: list[Atom] = []
        self.edges: set[tuple[int, int]] = set()
        self.scope_of: list[Scope | None] = []
        self.scopes: list[Scope] = []

    def add_atom(self, atom: Atom, scope: Scope | None) -> int:
        self.atoms.append(atom)
        self.scope_of.append(scope)
        return len(self.atoms) - 1

    def connect(self, before: _Block, after: _Block) -> None:
        for a in before.sinks:
            for b in after.sources:
                self.edges.add((a, b))

    def block(self, node: Node, scope: Scope | None) -> _Block:
        if isinstance(node, Flow):
            return self.flow_block(node, scope)
        index = self.add_atom(node, scope)
        return _Block([index], [index], [index])

    def flow_block(self, flow: Flow, scope: Scope | None) -> _Block:
        retry_index = None
        if flow.retry is not None:
            retry_index = self.add_atom(flow.retry, scope)
            scope = Scope(retry_index, scope)
            self.scopes.append(scope)
        blocks = [self.block(child, scope) for child in flow.children]
        if isinstance(flow, LinearFlow):
            for before, after in itertools.pairwise(blocks):
                self.connect(before, after)
        elif isinstance(flow, GraphFlow):
            self.graph_edges(flow, blocks)
        members = [i for b in blocks for i in b.members]
        inner = self.boundary(members)
        if retry_index is None:
            return _Block(members, *inner)
        for first in inner[0]:
            self.edges.add((retry_index, first))
        return _Block([retry_index, *members], [retry_index], inner[1] or [retry_index])

    def boundary(self, members: list[int]) -> tuple[list[int], list[int]]:
        inside = set(members)
        has_pred = {b for a, b in self.edges if a in inside and b in inside}
        has_succ = {a for a, b in self.edges if a in inside and b in inside}
        return ([m for m in members if m not in has_pred],
                [m for m in members if m not in has_succ])

    def graph_edges(self, flow: GraphFlow, blocks: list[_Block]) -> None:
        by_child = {id(child): block for child, block in zip(flow.children, blocks, strict=True)}
        for before, after, _ in flow.links:
            self.connect(by_child[id(before)], by_child[id(after)])
        provided = [self.names(b, "provides") for b in blocks]
        for index, block in enumerate(blocks):
            needed = self.names(block, "requires") | self.names(block, "optional")
            for name in sorted(needed - provided[index]):
                givers = [j for j, names in enumerate(provided) if j != index and name in names]
                if len(givers) > 1:
                    who = ", ".join(sorted(self.block_name(flow.children[j]) for j in givers))
                    raise errors.AmbiguousDependency(
                        f"graph flow {flow.name!r}: {name!r} needed by "
                        f"{self.block_name(flow.children[index])!r} is provided by {who}")
                if givers:
                    self.connect(blocks[givers[0]], block)

    def names(self, block: _Block, attr: str) -> set[str]:
        found: set[str] = set()
        for i in block.members:
            found |= getattr(self.atoms[i], attr)
        return found

    @staticmethod
    def block_name(node: Node) -> str:
        return node.name


def compile_flow(flow: Flow) -> CompiledFlow:
    """Compile ``flow``.

    Raises:
        CompilationError: duplicate atom names.
        DependencyFailure: a cycle (a ``CompilationError``; graph flows refuse most when
            added, but a subflow changed after it was added can still close one).
        AmbiguousDependency: an argument several atoms could provide to one consumer.
    """
    chain = _chain_of(flow)
    scopes: list[Scope] = []
    if chain is not None:
        atoms = chain
    else:
        atoms, scopes = _place_atoms(flow)
    providers: dict[str, list[int]] = {}
    for ca in atoms:
        for name in ca.atom.provides_map:
            providers.setdefault(name, []).append(ca.index)
    compiled = CompiledFlow(flow, atoms, {ca.name: ca for ca in atoms}, scopes, providers)
    for ca in atoms:
        _resolve_sources(compiled, ca)
    return compiled


def _chain_of(flow: Flow) -> list[CompiledAtom] | None:
    """The atoms of a linear flow of atoms only, without a retry (the most common flow), placed
    without building a graph: each runs after the one added before it. None for other flows."""
    if type(flow) is not LinearFlow or flow.retry is not None:
        return None
    children = flow.children
    if any(isinstance(child, Flow) for child in children):
        return None
    chain: list[Atom] = children  # type: ignore[assignment]  # no flows among them
    _check_names(chain)
    last = len(chain) - 1
    return [CompiledAtom(atom, atom.name, i, isinstance(atom, Retry),
                         (i - 1,) if i > 0 else (), (i + 1,) if i < last else (),
                         ancestors=(1 << i) - 1)
            for i, atom in enumerate(chain)]


def _place_atoms(flow: Flow) -> tuple[list[CompiledAtom], list[Scope]]:
    """Any flow's atoms in a valid run order, with their edges and retry scopes."""
    builder = _Builder()
    block = builder.flow_block(flow, None)
    _check_names(builder.atoms)
    order = _toposort(len(builder.atoms), builder.edges, builder.atoms)
    position = {old: new for new, old in enumerate(order)}
    preds: list[list[int]] = [[] for _ in order]
    succs: list[list[int]] = [[] for _ in order]
    for a, b in sorted(builder.edges):
        preds[position[b]].append(position[a])
        succs[position[a]].append(position[b])
    atoms = [CompiledAtom(builder.atoms[old], builder.atoms[old].name, new,
                          isinstance(builder.atoms[old], Retry), tuple(sorted(preds[new])),
                          tuple(sorted(succs[new])), builder.scope_of[old])
             for new, old in enumerate(order)]
    for scope in builder.scopes:
        scope.retry = position[scope.retry]
    for ca in atoms:
        inside = ca.scope
        while inside is not None:
            inside.members.append(ca.index)
            inside = inside.parent
        ca.ancestors = 0
        for p in ca.preds:
            ca.ancestors |= atoms[p].ancestors | (1 << p)
    del block
    return atoms, builder.scopes


def _check_names(atoms: list[Atom]) -> None:
    seen: set[str] = set()
    for atom in atoms:
        if atom.name in seen:
            raise errors.CompilationError(f"two atoms are named {atom.name!r}; names must be "
                                          "unique within a flow")
        seen.add(atom.name)


def _toposort(count: int, edges: Iterable[tuple[int, int]], atoms: list[Atom]) -> list[int]:
    indegree = [0] * count
    succs: list[list[int]] = [[] for _ in range(count)]
    for a, b in edges:
        indegree[b] += 1
        succs[a].append(b)
    ready = [i for i in range(count) if indegree[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in succs[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, j)
    if len(order) < count:
        stuck = sorted(atoms[i].name for i in range(count) if indegree[i] > 0)
        raise errors.DependencyFailure(f"the flow has a cycle among: {', '.join(stuck)}")
    return order


def _resolve_sources(compiled: CompiledFlow, ca: CompiledAtom) -> None:
    atom = ca.atom
    pairs = [(atom.args, ca.sources), (atom.optional_args, ca.optional)]
    if atom.revert_args or atom.revert_optional_args:
        pairs += [(atom.revert_args, ca.revert_sources),
                  (atom.revert_optional_args, ca.revert_optional)]
    for args, target in pairs:
        for arg, stored in args.items():
            target[arg] = _provider(compiled, ca, stored)


def _provider(compiled: CompiledFlow, ca: CompiledAtom, stored: str) -> tuple[int | None, Any]:
    visible = [p for p in compiled.providers.get(stored, ()) if ca.ancestors >> p & 1]
    # Among providers that run before the consumer, the nearest wins (a later provider
    # overrides an earlier one, as in a linear flow); only unordered ones are ambiguous.
    nearest = [p for p in visible
               if not any(compiled.atoms[q].ancestors >> p & 1 for q in visible if q != p)]
    if len(nearest) > 1:
        who = ", ".join(compiled.atoms[p].name for p in nearest)
        raise errors.AmbiguousDependency(
            f"atom {ca.name!r} requires {stored!r}, which {who} all provide")
    if not nearest:
        return (None, stored)
    provider = compiled.atoms[nearest[0]]
    return (provider.index, provider.atom.provides_map[stored])
