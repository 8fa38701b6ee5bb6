"""The engine's view of a flow detail: atom details by name, results, the store.

Every change goes to persistence before the engine moves on: ``save(atom_detail)`` writes one
atom's row; ``save_flow_state`` writes the flow's own row only (a flow detail without atoms, so
its cost does not grow with the number of atoms).

With a ``fence`` (a conductor's claim) every write carries it, and persistence refuses it with
``FencedOut`` once a newer claim took the flow detail over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato import errors
from legato.flow.atom import extract_result
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
        """Write atom details created by ``ensure_atoms(write=False)``, if any."""
        if self._unsaved is not None:
            self.persistence.update_flow_details(self._unsaved, fence=self.fence)
            self._unsaved = None

    # -- writes ----------------------------------------------------------------------------

    def save(self, atom_detail: AtomDetail) -> None:
        """Write one atom detail (``StorageFailure``/``SerializationError``/``FencedOut``
        propagate)."""
        self.persistence.update_atom_details(atom_detail, fence=self.fence)

    def save_flow_state(self, state: FlowState) -> None:
        """Record the flow's state: its own row only, plus atom details still unsaved (so a
        run that was not prepared separately saves its new atoms and RUNNING in one call)."""
        fd = self.flow_detail
        fd.state = state
        if self._unsaved is None:
            self.persistence.update_flow_state(fd.uuid, state, fence=self.fence)
            return
        self._unsaved.state = state
        self.persistence.update_flow_details(self._unsaved, fence=self.fence)
        self._unsaved = None

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
