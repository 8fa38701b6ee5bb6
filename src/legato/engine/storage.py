"""The engine's view of a flow detail: atom details by name, results, the store.

Every change goes to persistence before the engine moves on: ``save(atom_detail)`` writes one
atom's row; ``save_flow_state`` writes the flow's own row only (a flow detail without atoms, so
its cost does not grow with the number of atoms).

Writes may be coalesced: ``save(..., defer=True)`` (an atom's result, the flow's RUNNING) keeps
the change until the next write, and both go in one transaction (``Persistence.update_many``);
what a deferred write's ``then`` does (the engine's event) happens once it landed. The runtime
defers only a change that another write follows before anything else runs (the next atom's
start, the flow's end state) and flushes before it waits on running atoms.

With a ``fence`` (a conductor's claim) every write carries it, and persistence refuses it with
``FencedOut`` once a newer claim took the flow detail over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.flow.atom import extract_result
from legato.persistence.base import FlowWrites, check_atom_json
from legato.persistence.models import AtomDetail, Fence, FlowDetail, RetryDetail, TaskDetail
from legato.states import AtomState, FlowState

if TYPE_CHECKING:
    from legato.engine.compiler import CompiledFlow
    from legato.persistence.base import Persistence

__all__ = ["GRAPH_ATOMS_LIMIT", "Storage", "graph_edges"]


class Storage:
    """Atom details, results and stored inputs of one flow run.

    Attributes:
        flow_detail: the engine's working copy of the flow detail.
        store: stored inputs (``flow_detail.meta["store"]`` merged with the engine's ``store``).
        fence: the fence every write carries (None: writes are unconditional).
    """

    def __init__(self, persistence: Persistence, flow_detail: FlowDetail,
                 store: dict[str, Any] | None = None, *, fence: Fence | None = None) -> None:
        self.persistence = persistence
        self.flow_detail = flow_detail
        self.fence = fence
        self.store: dict[str, Any] = dict(flow_detail.meta.get("store") or {})
        self._new_store = dict(store or {})
        self.store.update(self._new_store)
        self._by_name: dict[str, AtomDetail] = {ad.name: ad for ad in flow_detail}
        self._compiled: CompiledFlow | None = None
        self._unsaved: FlowDetail | None = None
        # Deferred writes (``save(defer=True)``): atoms by uuid, the flow's state, and what to
        # do once they landed. Written with the next write, or by ``flush``.
        self._due_atoms: dict[str, AtomDetail] = {}
        self._due_state: FlowState | None = None
        self._then: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # -- setup -----------------------------------------------------------------------------

    def ensure_atoms(self, compiled: CompiledFlow, *, write: bool = True) -> list[AtomDetail]:
        """Create the atom details the flow detail lacks and save them, with any new store
        values, in one ``update_flow_details`` call (with ``write=False``: at the next
        ``save_flow_state``). Returns the details in run order."""
        self._compiled = compiled
        fresh = FlowDetail(self.flow_detail.name, self.flow_detail.uuid,
                           self.flow_detail.state, self.flow_detail.meta)
        for ca in compiled.atoms:
            ad = self._by_name.get(ca.name)
            if ad is None or (ca.is_retry != isinstance(ad, RetryDetail)):
                cls = RetryDetail if ca.is_retry else TaskDetail
                ad = cls(ca.name, version=ca.atom.version)
                if ca.name in self._by_name:  # kind changed: keep the stored uuid
                    ad.uuid = self._by_name[ca.name].uuid
                self._by_name[ca.name] = ad
                self.flow_detail.add(ad)
                fresh.add(ad)
        if fresh.atoms and "edges" not in self.flow_detail.meta:
            edges = graph_edges(compiled)
            if edges is not None:  # written with the new atoms: no write of its own
                self.flow_detail.meta["edges"] = edges
        store_changed = self._new_store and self.flow_detail.meta.get("store") != self.store
        if store_changed:
            self.flow_detail.meta["store"] = dict(self.store)
        self._new_store = {}
        if fresh.atoms or store_changed:
            self._unsaved = fresh
            if write:
                self.flush()
        return [self._by_name[ca.name] for ca in compiled.atoms]

    def flush(self) -> None:
        """Write what is due: atom details created by ``ensure_atoms(write=False)`` and
        deferred changes, if any, in one transaction."""
        self._write(None, None)

    # -- writes ----------------------------------------------------------------------------

    def save(self, atom_detail: AtomDetail, *, defer: bool = False,
             then: Callable[[], None] | None = None) -> None:
        """Write one atom detail, with whatever is due, in one transaction; with ``defer``
        keep it for the next write (its values are checked now). ``then`` runs once it landed.
        (``StorageFailure``/``SerializationError``/``FencedOut`` propagate.)"""
        if defer:
            check_atom_json(atom_detail)
            with self._lock:
                self._due_atoms[atom_detail.uuid] = atom_detail
                if then is not None:
                    self._then.append(then)
            return
        self._write(atom_detail, None)
        if then is not None:
            then()

    def save_progress(self, atom_detail: AtomDetail) -> None:
        """Write one atom detail alone (a running atom's progress, from any thread): what is
        due waits for the engine's own next write."""
        self.persistence.update_atom_details(atom_detail, fence=self.fence)

    def save_flow_state(self, state: FlowState, *, defer: bool = False,
                        then: Callable[[], None] | None = None) -> None:
        """Record the flow's state: its own row only, plus atom details still unsaved and
        deferred changes (so a run that was not prepared separately saves its new atoms and
        RUNNING in one call). With ``defer`` it waits for the next write, like ``save``."""
        self.flow_detail.state = state
        if defer:
            with self._lock:
                self._due_state = state
                if then is not None:
                    self._then.append(then)
            return
        self._write(None, state)
        if then is not None:
            then()

    def _write(self, atom_detail: AtomDetail | None, state: FlowState | None) -> None:
        """Write ``atom_detail`` and ``state`` (if given) with everything due, in one
        transaction; then run the deferred writes' ``then``."""
        with self._lock:
            atoms, due_state, then = self._due_atoms, self._due_state, self._then
            self._due_atoms, self._due_state, self._then = {}, None, []
        if atom_detail is not None:
            atoms[atom_detail.uuid] = atom_detail
        state = state if state is not None else due_state
        unsaved = self._unsaved
        persistence, fence = self.persistence, self.fence
        try:
            if unsaved is None and state is None and len(atoms) == 1:
                persistence.update_atom_details(next(iter(atoms.values())), fence=fence)
            elif unsaved is not None and not atoms:
                if state is not None:
                    unsaved.state = state
                persistence.update_flow_details(unsaved, fence=fence)
            elif unsaved is None and not atoms and state is not None:
                persistence.update_flow_state(self.flow_detail.uuid, state, fence=fence)
            elif unsaved is not None or atoms or state is not None:
                if unsaved is not None and state is not None:
                    unsaved.state = state
                persistence.update_many(FlowWrites(
                    self.flow_detail.uuid, flow=unsaved,
                    state=state if unsaved is None else None,
                    atoms=[ad for ad in atoms.values()
                           if unsaved is None or ad.uuid not in unsaved.atoms]), fence=fence)
        except BaseException:
            with self._lock:  # not written: still due (an engine resumed may write it)
                atoms.update(self._due_atoms)
                self._due_atoms = atoms
                if self._due_state is None:
                    self._due_state = due_state
                self._then[:0] = then
            if atom_detail is not None:
                self._due_atoms.pop(atom_detail.uuid, None)
            raise
        self._unsaved = None
        for call in then:
            call()

    # -- reads -----------------------------------------------------------------------------

    def get_atom_detail(self, name: str) -> AtomDetail:
        """The working atom detail called ``name``.

        Raises:
            NotFound: no atom of that name.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise errors.NotFound(f"no atom named {name!r} in flow "
                                  f"{self.flow_detail.name!r}") from None

    def get_atom_state(self, name: str) -> AtomState:
        return self.get_atom_detail(name).state

    @staticmethod
    def atom_result(ad: AtomDetail) -> Any:
        """What an atom last returned (for a retry: its latest attempt's value)."""
        if isinstance(ad, RetryDetail):
            return ad.results[-1][0] if ad.results else None
        return ad.results

    def fetch(self, name: str) -> Any:
        """The value stored under ``name``: from the last successful atom providing it, else
        from the store.

        Raises:
            NotFound: nothing provides ``name``.
        """
        if self._compiled is not None:
            for index in reversed(self._compiled.providers.get(name, ())):
                ca = self._compiled.atoms[index]
                ad = self._by_name[ca.name]
                if ad.state == AtomState.SUCCESS:
                    return extract_result(self.atom_result(ad), ca.atom.provides_map[name])
        if name in self.store:
            return self.store[name]
        raise errors.NotFound(f"nothing provides {name!r}")

    def fetch_all(self) -> dict[str, Any]:
        """Every stored input and every name a successful atom provides."""
        values = dict(self.store)
        if self._compiled is not None:
            for name in self._compiled.providers:
                try:
                    values[name] = self.fetch(name)
                except (errors.NotFound, LookupError, TypeError):
                    continue
        return values


#: Flows with more atoms than this record no edges (a viewer shows them as a list).
GRAPH_ATOMS_LIMIT = 500


def graph_edges(compiled: CompiledFlow) -> list[list[str]] | None:
    """The compiled flow's edges as ``[before, after]`` atom names, for viewers such as the
    dashboard (``flow_detail.meta["edges"]``); None for a flow that runs as one line (each
    atom after the one before it), or one too big to draw."""
    atoms = compiled.atoms
    if len(atoms) > GRAPH_ATOMS_LIMIT:
        return None
    if all(ca.preds == ((ca.index - 1,) if ca.index else ()) for ca in atoms):
        return None
    return [[atoms[p].name, ca.name] for ca in atoms for p in ca.preds]
