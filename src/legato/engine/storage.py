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
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, overload

from legato import errors
from legato.failure import Failure
from legato.flow.atom import Atom, extract_result
from legato.flow.retry import Retry
from legato.flow.task import Task
from legato.persistence.base import FlowWrites, check_atom_json
from legato.persistence.models import AtomDetail, Fence, FlowDetail, RetryDetail, TaskDetail
from legato.states import AtomState, FlowState, Intention

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
        # Atoms known only from ``ensure_atoms``, and (built on the first fetch) each provided
        # name's providers as ``(atom name, key)`` in run order, those atoms last.
        self._extra_atoms: dict[str, Atom] = {}
        self._providers: dict[str, list[tuple[str, Any]]] | None = None
        self._unsaved: FlowDetail | None = None
        # Deferred writes (``save(defer=True)``): atoms by uuid, the flow's state, and what to
        # do once they landed. Written with the next write, or by ``flush``.
        self._due_atoms: dict[str, AtomDetail] = {}
        self._due_state: FlowState | None = None
        self._then: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # -- setup -----------------------------------------------------------------------------

    def prepare(self, compiled: CompiledFlow, *, write: bool = True) -> list[AtomDetail]:
        """Create the atom details the flow detail lacks and save them, with any new store
        values, in one ``update_flow_details`` call (with ``write=False``: at the next
        ``save_flow_state``). Returns the details in run order."""
        self._compiled = compiled
        self._providers = None
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
        # What is stored: the recorded inputs and the engine's ``store`` (never transient ones).
        stored = {**(self.flow_detail.meta.get("store") or {}), **self._new_store}
        store_changed = self._new_store and self.flow_detail.meta.get("store") != stored
        if store_changed:
            self.flow_detail.meta["store"] = stored
        self._new_store = {}
        if fresh.atoms or store_changed:
            self._unsaved = fresh
            if write:
                self.flush()
        return [self._by_name[ca.name] for ca in compiled.atoms]

    def flush(self) -> None:
        """Write what is due: atom details created by ``ensure_atoms(write=False)`` and
        deferred changes, if any, in one transaction."""
        if (self._unsaved is not None or self._due_atoms or self._due_state is not None
                or self._then):  # mostly nothing is: the engine flushes before each wait
            self._write(None, None)

    # -- writes ----------------------------------------------------------------------------

    @overload
    def save(self, atom: str, result: Any, state: AtomState | str = AtomState.SUCCESS
             ) -> None: ...

    @overload
    def save(self, atom: AtomDetail, *, defer: bool = False,
             then: Callable[[], None] | None = None) -> None: ...

    def save(self, atom: AtomDetail | str, result: Any = None,
             state: AtomState | str = AtomState.SUCCESS, *, defer: bool = False,
             then: Callable[[], None] | None = None) -> None:
        """Record an outcome.

        ``save(atom_name, result, state=SUCCESS)`` (TaskFlow's form) records what the named
        atom returned (a retry: one more attempt in its history), or with ``FAILURE`` /
        ``REVERT_FAILURE`` its ``Failure`` (or exception), with ``REVERTED`` what its revert
        returned; written before it returns.

        ``save(atom_detail)`` (the engine's) writes one atom detail, with whatever is due, in
        one transaction; with ``defer`` keeps it for the next write (its values are checked
        now). ``then`` runs once it landed.

        Raises:
            NotFound: no atom of that name.
            StorageFailure, SerializationError, FencedOut: the write failed or was refused.
        """
        if isinstance(atom, str):
            self._change(atom, lambda ad: _put(ad, result, AtomState(state)))
            return
        if defer:
            check_atom_json(atom)
            with self._lock:
                self._due_atoms[atom.uuid] = atom
                if then is not None:
                    self._then.append(then)
            return
        self._write(atom, None)
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
        try:
            self._send(atoms, state, atom_detail)
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

    def _send(self, atoms: dict[str, AtomDetail], state: FlowState | None,
              unchecked: AtomDetail | None) -> None:
        """Write ``atoms`` (all checked with ``check_atom_json`` when they were deferred, but
        ``unchecked``), ``state`` and the unsaved atom details, if any, in one call."""
        unsaved = self._unsaved
        persistence, fence = self.persistence, self.fence
        if unsaved is None and state is None and len(atoms) == 1:
            persistence.update_atom_details(next(iter(atoms.values())), fence=fence)
        elif unsaved is not None and not atoms:
            if state is not None:
                unsaved.state = state
            persistence.update_flow_details(unsaved, fence=fence)
        elif unsaved is None and not atoms and state is not None:
            persistence.update_flow_state(self.flow_detail.uuid, state, fence=fence)
        elif unsaved is not None or atoms or state is not None:
            if unchecked is not None:
                check_atom_json(unchecked)
            if unsaved is not None and state is not None:
                unsaved.state = state
            persistence.update_many(FlowWrites(
                self.flow_detail.uuid, flow=unsaved,
                state=state if unsaved is None else None,
                atoms=[ad for ad in atoms.values()
                       if unsaved is None or ad.uuid not in unsaved.atoms]),
                fence=fence, checked=True)

    # -- TaskFlow's writes: each applied to a copy, written, and kept only once written ------

    def _change(self, name: str, change: Callable[[AtomDetail], None]) -> None:
        """Apply ``change`` to a copy of atom ``name``'s detail, write it (fenced, with what
        is due) and only then to the working detail: a refused write changes nothing."""
        ad = self.get_atom_detail(name)
        new = ad.copy()
        change(new)
        with self._lock:
            due = self._due_atoms.get(ad.uuid)
        try:
            self._write(new, None)
        except BaseException:
            if due is not None:  # the engine's deferred change to it is still due
                with self._lock:
                    self._due_atoms.setdefault(ad.uuid, due)
            raise
        ad.__dict__.update(new.__dict__)

    def set_atom_state(self, name: str, state: AtomState | str) -> None:
        """Record atom ``name``'s state (nothing is written if it has it already)."""
        state = AtomState(state)
        if self.get_atom_detail(name).state != state:
            self._change(name, lambda ad: setattr(ad, "state", state))

    def set_atom_intention(self, name: str, intention: Intention | str) -> None:
        """Record what the engine means to do with atom ``name`` next."""
        intention = Intention(intention)
        if self.get_atom_detail(name).intention != intention:
            self._change(name, lambda ad: setattr(ad, "intention", intention))

    def reset(self, name: str, state: AtomState | str = AtomState.PENDING) -> None:
        """Forget atom ``name``'s results and failures and give it ``state`` (nothing is
        written if it is in that state already)."""
        state = AtomState(state)
        if self.get_atom_detail(name).state != state:
            self._change(name, lambda ad: _reset(ad, state))

    def set_flow_state(self, state: FlowState | str) -> None:
        """Record the flow's state."""
        state = FlowState(state)
        old = self.flow_detail.state
        try:
            self.save_flow_state(state)
        except BaseException:
            self.flow_detail.state = old
            raise

    def inject(self, pairs: Mapping[str, Any] | Iterable[tuple[str, Any]], *,
               transient: bool = False) -> None:
        """Add inputs for the flow's atoms (names no atom provides), by name.

        Written to the flow detail (``meta["store"]``) before it returns, unless
        ``transient``: then kept in memory only, for values that cannot be stored (a
        connection, a lock); a resumed flow must be given them again.
        """
        values = dict(pairs)
        if not transient:
            meta = dict(self.flow_detail.meta)
            meta["store"] = {**(meta.get("store") or {}), **self._new_store, **values}
            fd = self.flow_detail
            self.persistence.update_flow_details(FlowDetail(fd.name, fd.uuid, fd.state, meta),
                                                 fence=self.fence)
            fd.meta.update(meta)  # in place: a detail still to be written shares it
            self._new_store = {}
        self.store.update(values)

    def ensure_atoms(self, atoms: Iterable[Atom]) -> list[str]:
        """Make sure each atom has a detail (a new one starts PENDING), writing the new ones
        in one call; return the details' uuids, in order. Their results become fetchable by
        the names they provide.

        Raises:
            TypeError: not a task or a retry.
            ValueError: a detail of that name exists for the other kind of atom.
        """
        atoms = list(atoms)
        fd = self.flow_detail
        fresh = FlowDetail(fd.name, fd.uuid, fd.state, fd.meta)
        uuids = []
        for atom in atoms:
            if not isinstance(atom, Task | Retry):
                raise TypeError(f"ensure_atoms: {atom!r} is not a task or a retry")
            cls = RetryDetail if isinstance(atom, Retry) else TaskDetail
            ad = self._by_name.get(atom.name) or fresh.find_by_name(atom.name)
            if ad is None:
                ad = cls(atom.name, version=atom.version)
                fresh.add(ad)
            elif not isinstance(ad, cls):
                raise ValueError(f"atom {atom.name!r} is recorded as a {ad.KIND}, "
                                 f"not a {cls.KIND}")
            uuids.append(ad.uuid)
        if fresh.atoms:
            self.persistence.update_flow_details(fresh, fence=self.fence)
            for ad in fresh:
                fd.add(ad)
                self._by_name[ad.name] = ad
        for atom in atoms:
            if self._atom(atom.name) is None:
                self._extra_atoms[atom.name] = atom
                self._providers = None
        return uuids

    def ensure_atom(self, atom: Atom) -> str:
        """``ensure_atoms([atom])``: the uuid of ``atom``'s detail."""
        return self.ensure_atoms([atom])[0]

    def _atom(self, name: str) -> Atom | None:
        ca = self._compiled.by_name.get(name) if self._compiled is not None else None
        return ca.atom if ca is not None else self._extra_atoms.get(name)

    def _provider_map(self) -> dict[str, list[tuple[str, Any]]]:
        """Each provided name's providers (built when first needed: the engine never asks)."""
        if self._providers is None:
            atoms = [ca.atom for ca in self._compiled.atoms] if self._compiled else []
            known = {atom.name for atom in atoms}
            atoms += [a for name, a in self._extra_atoms.items() if name not in known]
            providers: dict[str, list[tuple[str, Any]]] = {}
            for atom in atoms:
                for name, key in atom.provides_map.items():
                    providers.setdefault(name, []).append((atom.name, key))
            self._providers = providers
        return self._providers

    # -- reads -----------------------------------------------------------------------------

    @property
    def flow_name(self) -> str:
        return self.flow_detail.name

    @property
    def flow_uuid(self) -> str:
        return self.flow_detail.uuid

    @property
    def flow_meta(self) -> dict[str, Any]:
        return self.flow_detail.meta

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

    def get_atom_uuid(self, name: str) -> str:
        return self.get_atom_detail(name).uuid

    def get_atom_state(self, name: str) -> AtomState:
        return self.get_atom_detail(name).state

    def get_atom_intention(self, name: str) -> Intention:
        return self.get_atom_detail(name).intention

    def get_atoms_states(self, names: Iterable[str]) -> dict[str, tuple[AtomState, Intention]]:
        """``{name: (state, intention)}`` for each of ``names``."""
        return {name: (self.get_atom_state(name), self.get_atom_intention(name))
                for name in set(names)}

    def get_flow_state(self) -> FlowState:
        """The flow's recorded state (PENDING if it never ran)."""
        return self.flow_detail.state or FlowState.PENDING

    @staticmethod
    def atom_result(ad: AtomDetail) -> Any:
        """What an atom last returned (for a retry: its latest attempt's value)."""
        if isinstance(ad, RetryDetail):
            return ad.results[-1][0] if ad.results else None
        return ad.results

    def get_execute_result(self, name: str) -> Any:
        """What atom ``name``'s ``execute`` returned (its ``Failure`` if it failed).

        Raises:
            NotFound: no such atom, or it has no result now (not run, or reverted).
        """
        ad = self.get_atom_detail(name)
        if ad.failure is not None:
            return Failure.from_dict(ad.failure)
        if ad.state not in _EXECUTE_RESULT_STATES:
            raise errors.NotFound(f"atom {name!r} has no execute result (it is {ad.state})")
        return self.atom_result(ad)

    def get_revert_result(self, name: str) -> Any:
        """What atom ``name``'s ``revert`` returned (its ``Failure`` if it failed).

        Raises:
            NotFound: no such atom, or it was not reverted.
        """
        ad = self.get_atom_detail(name)
        if ad.revert_failure is not None:
            return Failure.from_dict(ad.revert_failure)
        if ad.state not in _REVERT_RESULT_STATES:
            raise errors.NotFound(f"atom {name!r} has no revert result (it is {ad.state})")
        return ad.revert_results

    def get_execute_failures(self) -> dict[str, Failure]:
        """``{atom name: Failure}`` of every recorded ``execute`` failure."""
        return {ad.name: Failure.from_dict(ad.failure)
                for ad in self.flow_detail if ad.failure is not None}

    def get_revert_failures(self) -> dict[str, Failure]:
        """``{atom name: Failure}`` of every recorded ``revert`` failure."""
        return {ad.name: Failure.from_dict(ad.revert_failure)
                for ad in self.flow_detail if ad.revert_failure is not None}

    def has_failures(self) -> bool:
        return any(ad.failure is not None or ad.revert_failure is not None
                   for ad in self.flow_detail)

    def _values(self, name: str, *, seen_by: str | None = None) -> list[Any]:
        """Values stored under ``name``, newest first: successful providers' results in
        reverse run order (only those that run before atom ``seen_by``, if given), then the
        stored input."""
        values = []
        compiled = self._compiled
        consumer = compiled.by_name.get(seen_by) if compiled and seen_by else None
        for atom_name, key in reversed(self._provider_map().get(name, ())):
            if consumer is not None:
                provider = compiled.by_name.get(atom_name) if compiled else None
                if provider is None or not consumer.ancestors >> provider.index & 1:
                    continue
            ad = self._by_name.get(atom_name)
            if ad is None or ad.state != AtomState.SUCCESS:
                continue
            try:
                values.append(extract_result(self.atom_result(ad), key))
            except (LookupError, TypeError):
                continue  # its result lacks that part: it does not provide the name
        if name in self.store:
            values.append(self.store[name])
        return values

    def fetch(self, name: str, many_handler: Callable[[list[Any]], Any] | None = None) -> Any:
        """The value stored under ``name``: from the last successful atom providing it, else
        the stored input; with ``many_handler``, what it returns given every value found
        (newest first).

        Raises:
            NotFound: nothing provides ``name``.
        """
        values = self._values(name)
        if not values:
            raise errors.NotFound(f"nothing provides {name!r}")
        return values[0] if many_handler is None else many_handler(values)

    def fetch_all(self, many_handler: Callable[[list[Any]], Any] | None = None
                  ) -> dict[str, Any]:
        """Every stored input and every name a successful atom provides. A name with
        several values maps to the list of them (newest first), or to what ``many_handler``
        returns given that list."""
        found = {}
        for name in [*self._provider_map(), *self.store]:
            values = self._values(name)
            if values:
                if many_handler is not None:
                    found[name] = many_handler(values)
                else:
                    found[name] = values if len(values) > 1 else values[0]
        return found

    def fetch_mapped_args(self, args_mapping: Mapping[str, str], atom_name: str | None = None,
                          *, optional_args: Collection[str] = ()) -> dict[str, Any]:
        """``{argument: value}`` for ``{argument: stored name}``. With ``atom_name``, that
        atom's injected values come first and only atoms that run before it provide.

        Raises:
            NotFound: a name that is not optional has no value.
        """
        injected: Mapping[str, Any] = {}
        if atom_name is not None:
            self.get_atom_detail(atom_name)
            atom = self._atom(atom_name)
            injected = atom.inject if atom is not None else {}
        args = {}
        for arg, name in args_mapping.items():
            if name in injected:
                args[arg] = injected[name]
                continue
            values = self._values(name, seen_by=atom_name)
            if values:
                args[arg] = values[0]
            elif arg not in optional_args:
                raise errors.NotFound(f"argument {arg!r}: nothing provides {name!r}")
        return args


_EXECUTE_RESULT_STATES = frozenset({AtomState.SUCCESS, AtomState.FAILURE, AtomState.REVERTING})
_REVERT_RESULT_STATES = frozenset({AtomState.REVERTED, AtomState.REVERT_FAILURE})


def _as_failure(value: Any, state: AtomState) -> dict[str, Any]:
    if isinstance(value, Failure):
        return value.to_dict()
    if isinstance(value, BaseException):
        return Failure.from_exception(value).to_dict()
    raise TypeError(f"save: a {state} result must be a Failure or an exception, "
                    f"not {type(value).__name__}")


def _put(ad: AtomDetail, result: Any, state: AtomState) -> None:
    """Record ``result`` on ``ad`` as TaskFlow's ``save`` does for ``state``."""
    if state == AtomState.FAILURE:
        ad.failure = _as_failure(result, state)
        if not isinstance(ad, RetryDetail):
            ad.results = None
    elif state == AtomState.REVERT_FAILURE:
        ad.revert_failure = _as_failure(result, state)
        ad.revert_results = None
    elif state == AtomState.REVERTED:
        ad.revert_results, ad.revert_failure = result, None
    elif isinstance(ad, RetryDetail):
        ad.results = [*(ad.results or []), [result, {}]]
        ad.failure = None
    else:
        ad.results, ad.failure = result, None
    ad.state = state


def _reset(ad: AtomDetail, state: AtomState) -> None:
    ad.state, ad.intention = state, Intention.EXECUTE
    ad.results = [] if isinstance(ad, RetryDetail) else None
    ad.failure = ad.revert_results = ad.revert_failure = None


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
