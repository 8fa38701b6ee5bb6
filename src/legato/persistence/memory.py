"""In-process persistence: for tests and for engines that need no durability."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from legato import errors
from legato.persistence.base import ENDED_BY_A_TAKE, FlowWrites, Persistence, lost_claim
from legato.persistence.models import (
    AtomDetail,
    Claim,
    Fence,
    FlowDetail,
    LogBook,
    copy_json,
)
from legato.states import FlowState

__all__ = ["MemoryPersistence"]


class MemoryPersistence(Persistence):
    """Keeps every model in dictionaries of this process (``memory://``). Thread-safe."""


    def __init__(self, url: str = "memory://", **options: Any) -> None:
        if urlsplit(url).query:
            raise ValueError(f"unknown persistence URL options in {url!r}: memory:// takes "
                             "none")
        super().__init__(url, **options)
        self._lock = threading.RLock()
        self._books: dict[str, LogBook] = {}  # stored lazily: flows live in _flows
        self._book_flows: dict[str, list[str]] = {}
        self._flows: dict[str, FlowDetail] = {}  # stored without atoms
        self._flow_book: dict[str, str] = {}
        self._flow_atoms: dict[str, list[str]] = {}
        self._atoms: dict[str, AtomDetail] = {}
        self._atom_flow: dict[str, str] = {}
        self._fences: dict[str, Fence] = {}  # by flow uuid: recorded by take_flow
        self._claims: dict[tuple[str, int], Claim] = {}  # job history, by (job, fence)

    def _save_logbook(self, book: LogBook) -> None:
        with self._lock:
            stored = self._books.get(book.uuid)
            created_at = book.created_at if stored is None else stored.created_at
            self._books[book.uuid] = LogBook(book.name, book.uuid, created_at, book.updated_at,
                                             copy_json(book.meta))  # its flows: in _flows
            self._book_flows.setdefault(book.uuid, [])
            for fd in book.flows.values():
                if fd.uuid not in self._flow_book:
                    self._flow_book[fd.uuid] = book.uuid
                    self._book_flows[book.uuid].append(fd.uuid)
                self._write_flow(fd)

    def _write_flow(self, fd: FlowDetail) -> None:
        self._flows[fd.uuid] = FlowDetail(fd.name, fd.uuid, fd.state, copy_json(fd.meta))
        order = self._flow_atoms.setdefault(fd.uuid, [])
        for ad in fd.atoms.values():
            if ad.uuid not in self._atoms:
                order.append(ad.uuid)
                self._atom_flow[ad.uuid] = fd.uuid
            self._atoms[ad.uuid] = ad.copy()

    def _get_logbook(self, book_uuid: str, lazy: bool) -> LogBook:
        with self._lock:
            stored = self._books.get(book_uuid)
            if stored is None:
                raise errors.NotFound(f"no logbook {book_uuid}")
            book = stored.copy()
            if not lazy:
                for flow_uuid in self._book_flows[book_uuid]:
                    book.add(self._get_flow_details(flow_uuid, False))
            return book

    def _get_logbooks(self, lazy: bool) -> Iterator[LogBook]:
        with self._lock:
            books = [self._get_logbook(u, lazy) for u in self._books]
        return iter(books)

    def _destroy_logbook(self, book_uuid: str) -> None:
        with self._lock:
            if self._books.pop(book_uuid, None) is None:
                raise errors.NotFound(f"no logbook {book_uuid}")
            for flow_uuid in self._book_flows.pop(book_uuid, []):
                self._flows.pop(flow_uuid, None)
                self._flow_book.pop(flow_uuid, None)
                self._fences.pop(flow_uuid, None)
                for atom_uuid in self._flow_atoms.pop(flow_uuid, []):
                    self._atoms.pop(atom_uuid, None)
                    self._atom_flow.pop(atom_uuid, None)

    def _check_fence(self, flow_uuid: str, fence: Fence | None, what: str) -> None:
        """Raise ``FencedOut`` unless ``fence`` is None or the flow's fence (lock held)."""
        if fence is not None and self._fences.get(flow_uuid) != fence:
            raise self._fenced_out(what, fence)

    def _take_new_flow(self, flow_uuid: str, fence: Fence, claim: Claim | None) -> bool:
        with self._lock:
            if flow_uuid not in self._flows or flow_uuid in self._fences:
                return False
            self._fences[flow_uuid] = fence
            if claim is not None:
                self._claims.setdefault((claim.job_uuid, claim.fence), claim.copy())
            return True

    def _take_flow(self, flow_uuid: str, fence: Fence, claim: Claim | None) -> None:
        with self._lock:
            if flow_uuid not in self._flows:
                raise errors.NotFound(f"no flow detail {flow_uuid}")
            held = self._fences.get(flow_uuid)
            if held is not None and held.job == fence.job and held.number > fence.number:
                raise self._fenced_out(f"taking flow detail {flow_uuid}", fence)
            self._fences[flow_uuid] = fence
            if claim is not None:
                ended = lost_claim(claim)
                for (job, number), earlier in self._claims.items():
                    if (job == claim.job_uuid and number < claim.fence
                            and earlier.outcome in ENDED_BY_A_TAKE):
                        for field, value in ended.items():
                            setattr(earlier, field, value)
                self._claims.setdefault((claim.job_uuid, claim.fence), claim.copy())

    # -- job history -----------------------------------------------------------------------

    def _record_claim(self, claim: Claim) -> None:
        with self._lock:
            self._claims[(claim.job_uuid, claim.fence)] = claim.copy()

    def _job_history(self, job_uuid: str) -> Iterable[Claim]:
        with self._lock:
            found = [c.copy() for (job, _), c in self._claims.items() if job == job_uuid]
        return sorted(found, key=lambda c: c.fence)

    def _find_jobs(self, prefix: str, limit: int) -> Iterable[str]:
        with self._lock:
            found = sorted({job for job, _ in self._claims if job.lower().startswith(prefix)})
        return found[:limit]

    def _find_logbooks(self, prefix: str, limit: int) -> Iterable[LogBook]:
        with self._lock:
            found = [b.copy() for u, b in self._books.items() if u.lower().startswith(prefix)]
        return found[:limit]

    def _flow_rows(self, state: str | None, since: dt.datetime | None,
                   limit: int) -> Iterable[tuple[FlowDetail, str]]:
        with self._lock:
            active = None if since is None else {
                c.flow_uuid for c in self._claims.values()
                if (c.ended_at or c.claimed_at) >= since}
            rows = []
            for flow_uuid in reversed(self._flows):  # newest first
                fd = self._flows[flow_uuid]
                if state is not None and str(fd.state or "PENDING") != state:
                    continue
                if active is not None and flow_uuid not in active:
                    continue
                rows.append((fd.copy(), self._flow_book[flow_uuid]))
                if len(rows) >= limit:
                    break
        return rows

    def _claims_of_flows(self, flow_uuids: list[str]) -> Iterable[Claim]:
        wanted = set(flow_uuids)
        with self._lock:
            found = [c.copy() for c in self._claims.values() if c.flow_uuid in wanted]
        return sorted(found, key=lambda c: c.claimed_at)

    def _claim_counts(self, since: dt.datetime) -> Iterable[tuple[str | None, str | None, int]]:
        counts: dict[tuple[str | None, str | None], int] = {}
        with self._lock:
            for c in self._claims.values():
                if c.ended_at is not None and c.ended_at >= since:
                    key = (c.outcome, c.flow_state)
                    counts[key] = counts.get(key, 0) + 1
        return [(outcome, state, n) for (outcome, state), n in counts.items()]

    def _update_flow_details(self, flow_detail: FlowDetail, fence: Fence | None) -> None:
        with self._lock:
            if flow_detail.uuid not in self._flows:
                raise errors.NotFound(f"no flow detail {flow_detail.uuid}")
            self._check_fence(flow_detail.uuid, fence,
                              f"updating flow detail {flow_detail.uuid}")
            self._write_flow(flow_detail)

    def _update_flow_state(self, flow_uuid: str, state: FlowState | None,
                           fence: Fence | None) -> None:
        with self._lock:
            stored = self._flows.get(flow_uuid)
            if stored is None:
                raise errors.NotFound(f"no flow detail {flow_uuid}")
            self._check_fence(flow_uuid, fence, f"updating the state of flow {flow_uuid}")
            stored.state = state  # our own copy: readers get copies of it

    def _check_many(self, writes: FlowWrites, fence: Fence | None) -> None:
        """Raise what ``_update_many`` would refuse (lock held)."""
        flow_uuid = writes.flow_uuid
        if flow_uuid not in self._flows:
            raise errors.NotFound(f"no flow detail {flow_uuid}")
        for ad in writes.atoms:
            if ad.uuid not in self._atoms:
                raise errors.NotFound(f"no atom detail {ad.uuid}")
            if self._atom_flow[ad.uuid] != flow_uuid:
                raise ValueError(f"atom {ad.name!r} is not an atom of flow {flow_uuid}")
        held = self._fences.get(flow_uuid)
        if fence is not None and held != fence and not (writes.take and held is None):
            raise self._fenced_out(f"writing flow detail {flow_uuid}", fence)

    def _update_many(self, writes: FlowWrites, fence: Fence | None) -> None:
        flow_uuid = writes.flow_uuid
        with self._lock:
            self._check_many(writes, fence)  # every check first: a refused batch changes nothing
            if writes.take:
                assert fence is not None
                self._fences[flow_uuid] = fence
                if writes.started is not None:
                    started = writes.started
                    self._claims.setdefault((started.job_uuid, started.fence), started.copy())
            if writes.flow is not None:
                self._write_flow(writes.flow)
            if writes.state is not None:
                self._flows[flow_uuid].state = writes.state
            for ad in writes.atoms:
                self._atoms[ad.uuid] = ad.copy()
            if writes.ended is not None:
                ended = writes.ended
                self._claims[(ended.job_uuid, ended.fence)] = ended.copy()

    def _get_flow_details(self, flow_uuid: str, lazy: bool) -> FlowDetail:
        with self._lock:
            stored = self._flows.get(flow_uuid)
            if stored is None:
                raise errors.NotFound(f"no flow detail {flow_uuid}")
            fd = stored.copy()
            fd.fence = self._fences.get(flow_uuid)
            if not lazy:
                for atom_uuid in self._flow_atoms[flow_uuid]:
                    fd.add(self._atoms[atom_uuid].copy())
            return fd

    def _get_flows_for_book(self, book_uuid: str, lazy: bool) -> Iterator[FlowDetail]:
        with self._lock:
            if book_uuid not in self._books:
                raise errors.NotFound(f"no logbook {book_uuid}")
            flows = [self._get_flow_details(u, lazy) for u in self._book_flows[book_uuid]]
        return iter(flows)

    def _update_atom_details(self, atom_detail: AtomDetail, fence: Fence | None) -> None:
        with self._lock:
            if atom_detail.uuid not in self._atoms:
                raise errors.NotFound(f"no atom detail {atom_detail.uuid}")
            if fence is not None:
                self._check_fence(self._atom_flow[atom_detail.uuid], fence,
                                  f"updating atom {atom_detail.name!r}")
            self._atoms[atom_detail.uuid] = atom_detail.copy()

    def _get_atom_details(self, atom_uuid: str) -> AtomDetail:
        with self._lock:
            stored = self._atoms.get(atom_uuid)
            if stored is None:
                raise errors.NotFound(f"no atom detail {atom_uuid}")
            return stored.copy()

    def _get_atoms_for_flow(self, flow_uuid: str) -> Iterator[AtomDetail]:
        with self._lock:
            if flow_uuid not in self._flows:
                raise errors.NotFound(f"no flow detail {flow_uuid}")
            atoms = [self._atoms[u].copy() for u in self._flow_atoms[flow_uuid]]
        return iter(atoms)

    def _clear_all(self) -> None:
        with self._lock:
            for store in (self._books, self._book_flows, self._flows, self._flow_book,
                          self._flow_atoms, self._atoms, self._atom_flow, self._fences,
                          self._claims):
                store.clear()
