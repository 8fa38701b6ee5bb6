"""A jobboard on ZooKeeper (kazoo): claims are ephemeral nodes, so they end with their session.

URL: ``zookeeper://host:port[,host:port...]/path?timeout=5&session_timeout=10&ttl=30``.
Layout under the board's path::

    jobs/job-<priority>-<uuid>-<seq>   persistent, sequential: the job as JSON (name, details,
                                       book, created_on, attempts, fence, available_at, reason)
    jobs/<job node name>/unclaimed     created and deleted at once by the transaction that ends
                                       a claim (abandon, release): its events tell other boards
                                       the job has no claim node now
    claims/<job node name>             ephemeral: {"owner", "fence", "ttl", "expires_at", ...}
    trash/<job node name>              persistent: the job plus "reason" and "trashed_at"
    entities/<kind>/<name>             ephemeral: {"kind", "name", "metadata", "expires_at"}

**Leases.** A claim ends in whichever way comes first:

* its owner's ZooKeeper session ends (the process died, or lost the server for longer than
  ``session_timeout``): the server deletes the ephemeral claim node, with no code running on the
  owner's side;
* its TTL passes without a ``renew``: the claim node stays until someone claims the job, but
  every reader treats it as ended. The TTL is measured on the server's clock only: from the
  claim node's ``mtime`` (when the server last wrote it) to the server's time now as this board
  knows it, at least: the latest ``mtime`` among the nodes it wrote or read lately, advanced by
  the time elapsed since (``ServerClock``; elapsed on the monotonic clock, or on the injected
  ``clock`` when there is one). Machines' clocks need not agree; a reader's estimate of the
  server's time trails it, so a reader never ends a claim before its owner's lease ends.
  (Delays and entity expiry compare the writer's clock with the reader's: skew shifts them by
  its size.)

The lease a conductor may trust is capped at the session timeout (``lease_cap``), whatever the
TTL, and the board's default TTL is at most the session timeout (a larger ``ttl`` given to the
board is cut to it). The board reports ``CLAIMS_LOST`` when its session ends, when it carries
on with a new one, and when its connection has been suspended for the session timeout; it then
forgets every claim it held. ``renew``, ``consume``, ``abandon``, ``release`` and ``trash``
check the job node's version in their transaction: every claim rewrites the job node (its
fence), so a claim node another session created since, which starts at version 0 again, can
never pass for the one checked.

``close`` ends the board's own session, and its claims with it (a shared client's session goes
on). kazoo 2.11's ``stop`` waits for the server's answer; 2.10's does not, so there the claim
nodes may outlive ``close`` for a moment (or, when its connection thread stops before sending
the request, until the session times out).

**Atomicity.** ``claim`` is one transaction: (delete the expired claim node, checking its
version,) create the claim node, and rewrite the job node with ``fence + 1`` and ``attempts + 1``
checking the job node's version. ``consume``, ``abandon``, ``release`` and ``trash`` check owner
and fence in the claim node, then commit one transaction that checks the versions they read; for
the board's own live claims the versions are remembered from the claim, so that is the only round
trip. ``abandon`` and ``release`` delete the claim node and rewrite the job node (``release``
with one attempt fewer and no delay); the node keeps its name, so the job keeps its place.
``consume_and_claim_next`` puts the consume and the next claim in one transaction when it can (if
any part fails nothing is done, and it falls back to a consume and then a ``claim_next``).
``consume_and_claim_next_async`` sends that same transaction and returns; whoever reads the answer
does the rest (a fallback included), and until then the job it claims is reserved in the index,
so the board's other claims pass it over.

**Lost data.** The board's ``epoch`` is the creation zxid of ``jobs/``. When a job is not found
(``Job.state``, ``wait``, the finishing calls) or a post finds ``jobs/`` gone, the board compares
it with the node's: a deleted (or deleted and re-created) path raises ``BoardDataLost`` once, the
paths are made again, and jobs posted before are reported lost, never COMPLETE.

**Finding work.** The priority and the post sequence are in the job node's name, so the order
comes from the names under ``jobs/`` alone. An in-memory index (``legato.jobboard.zookeeper.index``)
follows the board through events, at a cost per change rather than per job waiting (ZooKeeper 3.6
or later; kazoo has no call for its ``addWatch``, which ``kazoo_compat`` sends):

* a persistent recursive watch on ``jobs/`` reports each job node created, rewritten (claimed,
  abandoned or released) or deleted, by name, and the ``unclaimed`` markers;
* ``claims/`` has no watch of its own, so this board's own claims cost no events. After another
  board's claim rewrote a job node, whether it has a claim node is unknown (until an
  ``unclaimed`` marker says there is none) and the job is passed over; the claim node is read,
  with a one-shot watch that then reports its renewal or its end (a dead owner's session, say),
  once it stands before the jobs this board is about to claim, or when this board finds nothing
  else to claim. A board that only posts reads none; ``iterjobs`` (so ``wait`` too) reads, and
  watches, those of the jobs it lists.

Both nodes are listed in full (and every claim node read) only on (re)connection, with the
events that arrive meanwhile replayed on top. The index also keeps the data and version of the
next few candidates, read ahead in the background (pipelined), so that ``claim_next`` is
usually its claim transaction alone. What the index knows is a hint: the transaction's version
checks catch anything out of date, and the claim then reads the nodes and tries again. Events are
handled in the order the server sent them, before the replies that follow them (the board's
``PollingHandler`` runs its watchers as kazoo reads the events), so a claimer that
finds nothing makes one round trip (``sync``), after which every earlier change anywhere has
reached the index, and looks again. The same events wake ``wait()`` within milliseconds of a post
anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kazoo import exceptions as kz
from kazoo.client import KazooClient, KazooState
from kazoo.retry import KazooRetry

from legato import errors
from legato.jobboard.base import (
    Capabilities,
    Entity,
    JobBoard,
    JobCounts,
    JobRecord,
    Pending,
    Position,
    not_owner,
)
from legato.jobboard.zookeeper import kazoo_compat
from legato.jobboard.zookeeper.calls import Calls, Gathered
from legato.jobboard.zookeeper.entities import Entities
from legato.jobboard.zookeeper.follow import Follower, ServerClock, claim_expiry, decode_claim
from legato.jobboard.zookeeper.handler import PollingHandler
from legato.jobboard.zookeeper.index import (
    UNCLAIMED,
    Index,
    Key,
    Node,
    job_key,
    job_name_prefix,
    key_after,
    uuid_of,
)
from legato.jobboard.zookeeper.records import (
    CONSUME_OPS,
    Claim,
    Consuming,
    Held,
    LostRace,
    bounded,
    clone,
    decode_job,
    encode_job,
    failed_at,
    failure_of,
    with_claim,
)
from legato.jobboard.zookeeper.settings import ZooKeeperSettings, split_url
from legato.states import JobPriority, JobState

if TYPE_CHECKING:
    from legato.persistence.base import Persistence

__all__ = ["ZooKeeperJobBoard", "ZooKeeperSettings"]

logger = logging.getLogger(__name__)

_PAGE = 64
#: Largest job node written: the server's default ``jute.maxbuffer`` (1 MiB) less some room.
_MAX_NODE_BYTES = 1_000_000
#: Attempts at an optimistic transaction before giving up (each failure means real contention).
_RETRIES = 8
#: How many of the next candidates' job nodes ``claim_next`` reads ahead, in the background
#: (half as many at a time, in one request).
_READ_AHEAD = 8


class ZooKeeperJobBoard(JobBoard):
    """A jobboard on ZooKeeper; the module docstring describes the layout and the leases.

    Args:
        settings: where the board lives and its timeouts.
        kazoo_client: the ``KazooClient`` class to connect with (a subclass, say, that adds
            TLS or authentication settings); it gets ``hosts``, ``timeout``,
            ``connection_retry`` and ``handler`` (a ``PollingHandler``).
        client: a started ``KazooClient`` to share (as TaskFlow's board takes), instead of
            a session of the board's own: see "A shared client" below.
        **kwargs: ``JobBoard`` arguments (``name``, ``persistence``, ``ttl``, ``clock``...).

    **A shared client.** Given ``client``, the board opens no session: it uses the client's,
    and never starts, stops or closes it (``close`` removes the board's listener and stops
    routing its watch events; the client stays connected). So:

    * the session timeout is the client's (the one it asked the server for), read from it
      (``kazoo_compat.session_timeout``); it caps the TTL and ``lease_cap`` as the board's own
      would, and ``settings.session_timeout`` is not used; ``settings.hosts`` is taken from
      the client too, for messages.
    * the client's reconnection policy (``connection_retry``) is its owner's: the board's own
      client retries forever; one that gives up leaves the board unavailable until it is
      started again.
    * watch events run on the client's handler (kazoo's callback thread) rather than on its
      connection thread (the board's ``PollingHandler``): the board then waits for the events
      read so far to be handled before it trusts the index (``Follower.after_events``), so
      a claimer that finds nothing costs a little more.
    * claims and entities outlive ``close`` while the session lives: a claim ends by its TTL
      (or a release) rather than with a session the board would have ended; the board
      deletes the entities it registered when it closes.
    * boards sharing a client share its session: a session that ends ends all their claims,
      and each of them reports ``CLAIMS_LOST``. Boards on one client may follow the same path.
    """

    #: kazoo's connection thread writes requests and reads answers, and four consumes sent
    #: without waiting (each claiming the next job) go out as one ``multi`` (see Capabilities
    #: and docs/design.md, "Four jobs per multi").
    CAPABILITIES = Capabilities(notifications=True, sends_without_waiting=True,
                                pipelined_sends=True, gathered_sends=4)

    def __init__(self, settings: ZooKeeperSettings | None = None, *,
                 kazoo_client: type[Any] | None = None, client: Any = None,
                 **kwargs: Any) -> None:
        settings = settings or ZooKeeperSettings()
        if client is not None and kazoo_client is not None:
            raise ValueError("give the ZooKeeper board a started client or a kazoo_client "
                             "class to make one with, not both")
        self._kazoo_client = kazoo_client or KazooClient
        self._shared = client
        if client is not None:
            settings = dataclasses.replace(
                settings, session_timeout=kazoo_compat.session_timeout(client),
                hosts=",".join(f"{host}:{port}" for host, port in client.hosts) or settings.hosts)
        # A claim ends with the session anyway: a longer default TTL would only be a lease
        # its owner cannot trust (see ``lease_cap``).
        kwargs["ttl"] = min(kwargs.get("ttl", 30.0), settings.session_timeout)
        # Claim TTLs are measured on the server's clock; this one only measures time elapsed.
        elapsed = kwargs.get("clock") or time.monotonic
        super().__init__(**kwargs)
        self.settings = settings
        self._calls = Calls(self.name, settings.hosts, settings.timeout)
        self._calls.gather = self.CAPABILITIES.gathered_sends
        root = self.settings.path
        self._jobs, self._claims = f"{root}/jobs", f"{root}/claims"
        self._trash_root = f"{root}/trash"
        self._index = Index()
        self._follower = Follower(self._index, self._calls, jobs=self._jobs,
                                  claims=self._claims, clock=self.clock,
                                  server_clock=ServerClock(elapsed), read_ahead=_READ_AHEAD)
        self._local = threading.local()
        self._entities = Entities(f"{root}/entities", self._calls, clock=self.clock)
        # This board's own live claims, with the versions they were made at (by node name).
        self._holds: dict[str, Held] = {}
        self._holds_lock = threading.Lock()
        # Claims whose reply a lost connection swallowed: (job node name, fence). Released on
        # reconnection if they were made, since nobody holds their fenced Job.
        self._orphans: list[tuple[str, int]] = []
        # Abandons and releases this board made whose outcome the index has not recorded yet
        # (it is recorded after the events read so far: ``_written``). A claim waits for them,
        # so a job this board just handed back keeps its place in claim order for it too.
        self._unsettled = 0
        self._unsettled_lock = threading.Lock()
        # Fires once the connection has been suspended for as long as the session can last.
        self._suspension: threading.Timer | None = None
        self._ended = False  # the session ended (LOST) and no new one began yet

    @property
    def lease_cap(self) -> float:
        """The session timeout: a claim ends with its session, whatever its TTL, and the
        session may end that long after the server last heard from this board."""
        return self.settings.session_timeout

    @classmethod
    def from_url(cls, url: str, *, persistence: Persistence | None = None,
                 **options: Any) -> ZooKeeperJobBoard:
        """Build an unconnected board from a ``zookeeper://`` URL.

        ``timeout`` and ``session_timeout`` may be given as keyword options too; other options
        (``name``, ``ttl``, ``poll_interval``, ``clock``) go to ``JobBoard``.
        """
        settings, board_options = split_url(url, options)
        return cls(settings, persistence=persistence, **board_options)

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> None:
        kazoo_compat.check()  # MissingDriver: a kazoo this board does not work with
        client = self._shared
        if client is None:
            client = self._kazoo_client(
                hosts=self.settings.hosts, timeout=self.settings.session_timeout,
                # Reconnect forever: the same board object carries on once the server is back.
                connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=1.0),
                handler=PollingHandler(),
            )
        elif client.state != KazooState.CONNECTED or not client.client_id:
            raise errors.BoardUnavailable(
                f"the kazoo client given to board {self.name!r} is not connected (state "
                f"{client.state}): start it before connecting the board")
        try:
            if self._shared is None:
                client.start(timeout=self.settings.timeout)
            self._calls.client, self._calls.session_id = client, client.client_id[0]
            for path in (self._jobs, self._claims, self._trash_root, self._entities.root):
                client.ensure_path(path)
            # A first reading of the server's time (claim TTLs are measured on it).
            self._follower.server_clock.learn(client.set(self.settings.path, b""))
            self._epoch = _epoch_of(client.exists(self._jobs))
            self._follower.attach(client)
            client.add_listener(self._on_state)
            self._follower.sync()
        except Exception as exc:
            self._calls.client = None
            self._follower.detach()
            self._let_go(client)
            raise errors.BoardUnavailable(
                f"cannot open board {self.name!r} on ZooKeeper at {self.settings.hosts}: "
                f"{exc!r}") from exc

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._calls.flush()  # consumes gathered and not sent yet (their answers are kept)
        if self._shared is not None:
            self._entities.withdraw()  # the session they would end with goes on
        client, self._calls.client = self._calls.client, None
        self._entities.forget()  # they end with the session
        with self._holds_lock:
            self._holds.clear()
        if client is not None:
            self._let_go(client)
        self._end_suspension()
        self._follower.detach()  # also wakes waiters

    def _let_go(self, client: Any) -> None:
        """Let go of ``client``: stop it if it is the board's own; a shared one only loses
        the board's listener and watch routing, and stays connected."""
        client.remove_listener(self._on_state)
        if self._shared is None:
            shutdown(client)
        else:
            self._follower.unroute(client)

    def _on_state(self, state: str) -> None:
        # Called on kazoo's connection thread: never block here. Every new connection needs
        # its watches added again, and changes made meanwhile fired no event.
        self._index.desync()  # also wakes waiters: they see the outage (or recovery) at once
        client = self._calls.client
        if state == KazooState.SUSPENDED:
            self._begin_suspension()
            return
        self._end_suspension()
        if state == KazooState.LOST:
            self._ended = True
            self._lose_claims("its ZooKeeper session ended")
        elif state == KazooState.CONNECTED and client is not None:
            session = client.client_id
            if session is not None and session[0] != self._calls.session_id and not self._ended:
                # Here, before any reply on the new session is read: no claim made through it
                # can be taken for one of the old session's.
                self._lose_claims("it carries on with a new ZooKeeper session")
            self._ended = False
            client.handler.spawn(self._after_reconnect)

    def _lose_claims(self, why: str) -> None:
        """Every claim made through this board has ended, or may have (the server deletes
        their nodes with the session): forget them, and say so (``CLAIMS_LOST``)."""
        with self._holds_lock:
            self._holds.clear()
        self._claims_lost(why)

    def _begin_suspension(self) -> None:
        if self._suspension is not None:
            return
        timer = threading.Timer(self.settings.session_timeout,
                                lambda: self._suspended_too_long(timer))
        timer.daemon = True
        self._suspension = timer
        timer.start()

    def _end_suspension(self) -> None:
        timer, self._suspension = self._suspension, None
        if timer is not None:
            timer.cancel()

    def _suspended_too_long(self, timer: threading.Timer) -> None:
        client = self._calls.client
        if self._suspension is timer and (client is None
                                          or client.state != KazooState.CONNECTED):
            self._lose_claims(f"its connection to ZooKeeper has been suspended for "
                              f"{self.settings.session_timeout:g}s, the session timeout")

    def _after_reconnect(self) -> None:
        client = self._calls.client
        if client is None or not client.client_id:
            return
        try:
            if client.client_id[0] != self._calls.session_id:
                logger.warning("board %r lost its ZooKeeper session: its claims have ended; "
                               "carrying on with a new session", self.name)
                self._calls.session_id = client.client_id[0]
                self._orphans.clear()
                self._entities.restore()
            else:
                self._release_orphans()
            self._follower.ensure_synced()
        except Exception as exc:  # a background task: log, never kill kazoo's thread
            logger.warning("board %r could not restore its state after reconnecting: %r",
                           self.name, exc)

    # -- decoding --------------------------------------------------------------------------

    def _decode_job(self, name: str, data: bytes) -> JobRecord | None:
        """The record in a job node, or None (warned once) when it cannot be decoded."""
        try:
            return decode_job(name, data)
        except errors.GarbageRecord as exc:
            if self._index.garbage(name):
                logger.warning("board %r skips job node %s: cannot decode it (%s)",
                               self.name, name, exc)
            return None

    def _job_with_claim(self, name: str, job: tuple[bytes, Any] | None,
                        claim: tuple[bytes, Any] | None) -> JobRecord | None:
        record = None if job is None else self._decode_job(name, job[0])
        if record is None or claim is None:
            return record
        # The lease's end on this board's clock, not the owner's ``expires_at``.
        return with_claim(record, claim[0], ends=self._follower.claim_ends(*claim))

    # -- posting and reading ---------------------------------------------------------------

    def _post(self, record: JobRecord) -> None:
        prefix = f"{self._jobs}/{job_name_prefix(record.priority, record.uuid)}"
        data = encode_job(record)
        if len(data) > _MAX_NODE_BYTES:
            # The server would drop the whole connection over it (jute.maxbuffer).
            raise errors.JobFailure(
                f"job {record.name!r} is {len(data)} bytes as JSON; a ZooKeeper node holds at "
                f"most {_MAX_NODE_BYTES} (keep large data in the job's book)", job_uuid=record.uuid)
        try:
            path = self._calls.result(self._calls.live().create_async(prefix, data, sequence=True))
        except kz.NoNodeError:
            self._check_epoch()  # jobs/ is gone: the board's path was deleted
            raise
        name = path.rsplit("/", 1)[1]
        self._index.add(name, record.available_at, (data, 0))
        key = job_key(name)
        record.sequence = key[1] if key is not None else 0

    def _post_many(self, records: list[JobRecord]) -> None:
        """Post many jobs with pipelined creates (not atomic; benchmarks fill boards with it)."""
        client = self._calls.live()
        for start in range(0, len(records), 1000):
            batch = records[start:start + 1000]
            pending = [client.create_async(
                f"{self._jobs}/{job_name_prefix(r.priority, r.uuid)}", encode_job(r),
                sequence=True) for r in batch]
            for record, item in zip(batch, pending, strict=True):
                name = self._calls.result(item).rsplit("/", 1)[1]
                self._index.add(name, record.available_at)
                key = job_key(name)
                record.sequence = key[1] if key is not None else 0

    def _name_of(self, job_uuid: str) -> str:
        self._follower.ensure_synced()
        name = self._index.lookup(job_uuid)
        if name is None and not self._index.known_gone(job_uuid):
            self._follower.catch_up()  # posted elsewhere moments ago: its event is on its way
            name = self._index.lookup(job_uuid)
            if name is None:
                self._index.forget(job_uuid)  # absent after catching up: no need to look again
        if name is None:
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        return name

    def _get(self, job_uuid: str) -> JobRecord:
        self._note_generation()
        name = self._name_of(job_uuid)
        job, claim = self._calls.read(f"{self._jobs}/{name}", f"{self._claims}/{name}")
        record = self._job_with_claim(name, job, claim)
        if record is None:
            if job is None:
                self._index.remove(name)
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        return record

    def _iter_records(self, only_unclaimed: bool, ensure_fresh: bool,
                      position: Position | None = None) -> Iterator[JobRecord]:
        self._note_generation()
        self._calls.live()  # even when the index has nothing to read: an outage is reported at once
        if ensure_fresh:
            self._follower.catch_up()
        else:
            self._follower.ensure_synced()
        after: Key | None = key_after(*position) if position is not None else None
        while keys := self._index.page(after, self.clock(), only_unclaimed=only_unclaimed,
                                       limit=_PAGE):
            after = keys[-1]
            names = [key[2] for key in keys]
            for name, (job, claim) in zip(names, self._follower.read_page(names), strict=True):
                record = self._job_with_claim(name, job, claim)
                if record is not None:
                    yield record

    def _waiting_heads(self) -> list[JobRecord]:
        # The index gives each priority's first job not known claimed or delayed, at no cost;
        # they are read together in one round trip, and a priority whose candidate turns out
        # unclaimable (a claim made elsewhere, not heard of yet) looks again after it.
        self._calls.live()
        self._follower.ensure_synced()
        heads: list[JobRecord] = []
        starts = {int(p): key_after(int(p), -1) for p in JobPriority}
        while starts:
            now, found = self.clock(), {}
            for priority, start in starts.items():
                keys = self._index.page(start, now, only_unclaimed=True, limit=1)
                if keys and keys[0][0] == -priority:
                    found[priority] = keys[0]
            names = [key[2] for key in found.values()]
            pages = zip(found.items(), self._follower.read_page(names), strict=True)
            starts = {}
            for (priority, key), (job, claim) in pages:
                record = self._job_with_claim(key[2], job, claim)
                if record is not None and record.claimable(self.clock()):
                    heads.append(record)
                else:  # gone, garbage or claimed meanwhile: look after it
                    starts[priority] = key
        return heads

    def _iter_claimed(self) -> Iterator[JobRecord]:
        # The index knows which jobs have a claim node; the claims made elsewhere that it has
        # not read yet are read first (never more than the live claims), then those jobs.
        self._calls.live()
        self._follower.ensure_synced()
        self._follower.read_claims(self._index.unknown_claims())
        names = self._index.claimed_names(self.clock())
        for first in range(0, len(names), _PAGE):
            page = names[first:first + _PAGE]
            for name, (job, claim) in zip(page, self._follower.read_page(page), strict=True):
                record = self._job_with_claim(name, job, claim)
                if record is not None:
                    yield record

    def _job_count(self) -> int:
        stat = self._calls.result(self._calls.live().exists_async(self._jobs))
        return int(stat.numChildren) if stat is not None else 0

    def _job_counts(self) -> JobCounts:
        # The children counts of jobs/ and trash/ from the server (two node stats, sent
        # together), claims and delays from the index the board keeps, after reading the
        # claim nodes it has not read (claims made elsewhere since; never more than the live
        # claims). Delays are known for the jobs this board object posted or read: another
        # producer's delayed job that nothing here has read yet counts as waiting.
        client = self._calls.live()
        self._follower.ensure_synced()
        self._follower.read_claims(self._index.unknown_claims())
        sent = [client.exists_async(path) for path in (self._jobs, self._trash_root)]
        jobs, trashed = (self._calls.result(stat) for stat in sent)
        total = int(jobs.numChildren) if jobs is not None else 0
        claimed, delayed = self._index.counts(self.clock())
        return JobCounts(max(0, total - claimed - delayed), delayed, claimed,
                              int(trashed.numChildren) if trashed is not None else 0)

    def _check_epoch(self) -> None:
        """The board's epoch is the creation zxid of ``jobs/``: when that node is gone or was
        created again (the board's path deleted), its jobs are lost. Then the paths are made
        again, the board takes the new epoch, and ``BoardDataLost`` says what happened."""
        client = self._calls.live()
        epoch = _epoch_of(self._calls.result(client.exists_async(self._jobs)))
        if epoch == self._epoch:
            return
        known = self._epoch
        for path in (self._jobs, self._claims, self._trash_root, self._entities.root):
            self._calls.result(client.ensure_path_async(path))
        self._epoch = _epoch_of(self._calls.result(client.exists_async(self._jobs)))
        what = "deleted" if epoch is None else "deleted and created again"
        message = (f"board {self.name!r} on ZooKeeper at {self.settings.hosts} lost its data: "
                   f"{self._jobs} (epoch {known}) was {what}; every job posted before is gone "
                   "and never completed")
        logger.error("%s", message)
        raise errors.BoardDataLost(message)

    # -- claims ----------------------------------------------------------------------------

    def _claim(self, job_uuid: str, who: str, ttl: float) -> JobRecord:
        return self._claim_name(self._name_of(job_uuid), who, ttl)

    def _claim_next(self, who: str, ttl: float) -> JobRecord | None:
        if self._orphans:
            self._release_orphans()
        self._follower.ensure_synced()
        if self._unsettled:
            self._follower.wait_for_events()  # this board's own abandons are in the index
        claimed = self._claim_first(who, ttl)
        if claimed is None:
            # Jobs posted (or claims ended) elsewhere whose events have not come yet.
            self._follower.catch_up()
            claimed = self._claim_first(who, ttl)
        return claimed

    def _claim_first(self, who: str, ttl: float) -> JobRecord | None:
        lost = 0
        while (name := self._index.take(self.clock(), skip=_spread(lost))) is not None:
            try:
                return self._claim_name(name, who, ttl)
            except LostRace:
                lost += 1  # another claimer (likely another process) got there first
            except (errors.UnclaimableJob, errors.NotFound):
                continue
            finally:
                self._index.release(name)
        return None

    def _claim_name(self, name: str, who: str, ttl: float) -> JobRecord:
        """Claim the job node ``name``: one transaction when its data is known (and it is known
        to have no claim node), otherwise a read of both nodes first. The transaction checks
        the job node's version, so data known from earlier is only ever a guess."""
        for attempt in range(_RETRIES):
            self._follower.fetched(name)
            token = self._index.token()
            job = self._index.cached(name) if attempt == 0 else None
            cached, claim, ends = job is not None, None, 0.0
            if job is None:
                job, claim, ends = self._follower.read_nodes(name)
            record = self._claimable(name, job, claim, token, ends)
            assert job is not None
            prepared = self._prepare_claim(name, record, job[1], claim, who, ttl, cached=cached)
            pending = self._send_claim(prepared, prepared.add_to)
            self._follower.read_ahead()  # the next candidates, sent after the claim
            results = self._claim_outcome(prepared, pending)
            failure = failure_of(results)
            if failure is None:
                return self._claim_committed(prepared, results[-1])
            self._claim_failed(prepared, failure)  # raises, or returns to look again
        raise errors.UnclaimableJob(f"job {uuid_of(name)} kept changing while claiming it",
                                    job_uuid=uuid_of(name))

    def _prepare_claim(self, name: str, record: JobRecord, job_version: int,
                       claim: Node | None, who: str, ttl: float, *, cached: bool) -> Claim:
        now = self.clock()
        record.fence += 1
        record.attempts += 1
        record.last_modified = now
        record.lease_expires = now + ttl
        data = {"owner": who, "fence": record.fence, "ttl": ttl, "claimed_at": now,
                "expires_at": now + ttl, "session": self._calls.session_id}
        return Claim(name=name, job_path=f"{self._jobs}/{name}",
                      claim_path=f"{self._claims}/{name}", record=record, claim=data,
                      job_data=encode_job(record), job_version=job_version,
                      stale=claim[1] if claim is not None else None, cached=cached)

    def _send_claim(self, prepared: Claim, ops: Callable[[Any], None], *,
                    gather: bool = False) -> Any:
        """Send a transaction that includes ``prepared``'s operations (gathered with others:
        ``Calls.send``), telling the index that the change to the job node it makes is this
        board's own; ``_claim_outcome`` must follow (it ends the ``writing`` begun here)."""
        self._index.writing(prepared.name)
        try:
            return self._calls.send(ops, gather=gather)
        except BaseException:
            self._written(prepared.name)
            raise

    def _claim_outcome(self, prepared: Claim, pending: Any) -> list[Any]:
        results: list[Any] | None = None
        try:
            results = self._calls.outcome(pending, on_unknown=functools.partial(
                self._unknown_claim, name=prepared.name, fence=prepared.record.fence))
            return results
        finally:
            claimed = None
            if results is not None and failure_of(results) is None:
                claimed = functools.partial(self._index.claimed, prepared.name,
                                            float(prepared.claim["expires_at"]))
            self._written(prepared.name, claimed)

    def _written(self, name: str, outcome: Callable[[], None] | None = None, *,
                 unclaim: bool = False) -> None:
        """This board's write to the job node ``name`` is over: once the events read so far
        (its own among them) are handled, record its ``outcome`` in the index and read the
        claim node if that left it unknown."""
        def done() -> None:
            try:
                if outcome is not None:
                    outcome()
                if self._index.written(name):
                    self._follower.read_claim_async(name)
            finally:
                if unclaim:
                    with self._unsettled_lock:
                        self._unsettled -= 1

        if unclaim:
            with self._unsettled_lock:
                self._unsettled += 1
        self._follower.after_events(done)

    def _claim_committed(self, prepared: Claim, job_stat: Any) -> JobRecord:
        self._follower.server_clock.learn(job_stat)
        record = prepared.record
        self._remember_hold(Held(prepared.name, prepared.claim, 0, clone(record),
                                  int(job_stat.version)))
        record.state, record.owner = JobState.CLAIMED, prepared.claim["owner"]
        return record

    def _claim_failed(self, prepared: Claim, failure: Exception) -> None:
        """Learn from a failed claim transaction: raise ``NotFound`` (the job is gone) or
        ``LostRace`` (claimed by someone else), or return to read and try again."""
        name, job_uuid = prepared.name, prepared.record.uuid
        if isinstance(failure, kz.NoNodeError) and prepared.stale is None:
            self._index.remove(name)
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        if isinstance(failure, kz.NodeExistsError):
            if self._index.claim_exists(name):
                self._follower.read_claim_async(name)
            raise LostRace(f"job {job_uuid} was just claimed by someone else",
                            job_uuid=job_uuid)
        if prepared.cached:
            self._index.stale(name)
        # Otherwise someone claimed, renewed or abandoned it meanwhile: look again.

    def _consume_and_claim_next(self, job_uuid: str, who: str, fence: int | None,
                                ttl: float) -> JobRecord | None:
        """One transaction that consumes this board's own claim and claims the next job, when
        the next job's data is already known; otherwise the consume alone, then a
        ``claim_next``. If the transaction fails nothing was done: a consume, then a
        ``claim_next``, follow. Nothing is claimed unless the consume commits."""
        sent = self._send_consume(job_uuid, who, fence, ttl)
        if sent is None:
            return self._consume_then_claim(job_uuid, who, fence, ttl)
        return self._consumed(sent)

    def _send_consume_and_claim_next(self, job_uuid: str, who: str, fence: int | None,
                                     ttl: float) -> Pending[JobRecord | None]:
        """``_consume_and_claim_next`` with its transaction sent, not waited for; the thread
        that asks the ``Pending`` first reads the answer and does what follows (a fallback
        included). Until then the job it claims stays reserved in the index, so this board's
        other claims pass it over. A claim this board does not remember is consumed (and the
        next job claimed) at once."""
        try:
            sent = self._send_consume(job_uuid, who, fence, ttl, gather=True)
        except Exception as exc:  # reported by result(), as every board error is
            return Pending.failed(exc)
        if sent is None:
            return Pending.of(functools.partial(self._consume_then_claim, job_uuid, who, fence,
                                                ttl))
        return Pending(functools.partial(self._consumed, sent))

    def _consume_then_claim(self, job_uuid: str, who: str, fence: int | None,
                            ttl: float) -> JobRecord | None:
        return super()._consume_and_claim_next(job_uuid, who, fence, ttl)

    def _send_consume(self, job_uuid: str, who: str, fence: int | None, ttl: float, *,
                      gather: bool = False) -> Consuming | None:
        """Send the consume of a claim this board remembers, with the claim of the next job
        when its data is known (``gather``: in the transaction gathering such calls, see
        ``Calls``); None when the claim is not remembered."""
        held = (None if self._orphans or not self._index.synced
                else self._remembered(job_uuid, who, fence))
        if held is None:
            return None
        name = self._index.take(self.clock())
        prepared = None
        try:
            if name is not None and name != held.name:
                prepared = self._prepare_cached(name, who, ttl)
        finally:
            if prepared is None and name is not None:
                self._index.release(name)  # stays reserved only if claimed with the consume
        if prepared is None:
            pending = self._calls.send(functools.partial(self._consume_ops, held=held),
                                       gather=gather)
        else:
            try:
                pending = self._send_claim(prepared, functools.partial(
                    self._consume_and_claim_ops, held=held, prepared=prepared), gather=gather)
            except BaseException:
                self._index.release(prepared.name)
                raise
        # The next candidates (after this one, if any) are read while the transaction commits,
        # sent after it so that its answer does not wait for theirs. Gathered, they are read
        # when the transaction goes out (once per ``gather`` calls: every one missing among
        # the next few, for the next calls), or at once when this call found the next job's
        # data missing.
        if not isinstance(pending, Gathered):
            self._follower.read_ahead()
        elif pending.committed or prepared is None:
            self._follower.read_ahead(every=True)
        return Consuming(job_uuid=job_uuid, who=who, fence=fence, ttl=ttl, held=held,
                          prepared=prepared, pending=pending)

    def _consume_and_claim_ops(self, txn: Any, *, held: Held, prepared: Claim) -> None:
        self._consume_ops(txn, held)
        prepared.add_to(txn)

    def _consumed(self, sent: Consuming) -> JobRecord | None:
        """Read the answer to ``_send_consume``'s transaction and carry on from it."""
        held, prepared = sent.held, sent.prepared
        if prepared is None:
            results = self._calls.outcome(sent.pending)
        else:
            try:
                results = self._claim_outcome(prepared, sent.pending)
            finally:
                self._index.release(prepared.name)
        failed = failed_at(results)
        if failed is None:
            self._forget_hold(held.name)
            self._index.remove(held.name)
            if prepared is not None:
                return self._claim_committed(prepared, results[-1])
            try:
                return self._claim_next(sent.who, sent.ttl)
            except Exception as exc:  # consumed already: as in JobBoard, the caller claims again
                logger.debug("board %r: claim after consuming %s failed: %s", self.name,
                             sent.job_uuid, exc)
                return None
        if failed < CONSUME_OPS:
            self._forget_hold(held.name)  # changed under us: the consume reads and checks
        elif prepared is not None:
            with contextlib.suppress(errors.NotFound, errors.UnclaimableJob):
                self._claim_failed(prepared, results[failed])
        return self._consume_then_claim(sent.job_uuid, sent.who, sent.fence, sent.ttl)

    def _prepare_cached(self, name: str, who: str, ttl: float) -> Claim | None:
        """A claim of ``name`` built from what the index knows, or None if that is not enough
        (or shows the job cannot be claimed now)."""
        self._follower.fetched(name)
        token = self._index.token()
        job = self._index.cached(name)
        if job is None:
            return None
        try:
            record = self._claimable(name, job, None, token)
        except errors.JobFailure:
            return None
        return self._prepare_claim(name, record, job[1], None, who, ttl, cached=True)

    def _claimable(self, name: str, job: Node | None, claim: Node | None,
                   token: int, ends: float = 0.0) -> JobRecord:
        """The job's record if it may be claimed now (``claim`` ending at ``ends`` on this
        board's clock, see ``ServerClock``); otherwise the error saying why."""
        job_uuid = uuid_of(name)
        if job is None:
            self._index.remove(name)
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        record = self._decode_job(name, job[0])
        if record is None:
            raise errors.UnclaimableJob(f"job {job_uuid} cannot be decoded", job_uuid=job_uuid)
        now = self.clock()
        if claim is not None:
            data = decode_claim(claim[0])
            if ends > now:
                self._index.claimed(name, ends, seen=token)
                owner = data.get("owner")
                # Claimed through another session (another board, likely another process):
                # a race lost; through ours: the index was just behind.
                error = LostRace if data.get("session") != self._calls.session_id else (
                    errors.UnclaimableJob)
                raise error(f"job {job_uuid} is claimed by {owner!r}", job_uuid=job_uuid,
                            owner=owner)
        if record.available_at is not None and record.available_at > now:
            self._index.delayed(name, record.available_at, seen=token)
            raise errors.UnclaimableJob(f"job {job_uuid} is delayed", job_uuid=job_uuid)
        return record

    def _unknown_claim(self, pending: Any, *, name: str, fence: int) -> None:
        """A claim's reply was lost (timeout or connection loss): if the claim was made, end it,
        since nobody holds its fenced ``Job``."""
        def settled(result: Any) -> None:
            try:
                failed = any(isinstance(r, Exception) for r in result.get(block=False))
            except Exception:  # the connection dropped: the claim may exist; look on reconnect
                self._orphans.append((name, fence))
                return
            client = self._calls.client
            if not failed and client is not None:
                client.delete_async(f"{self._claims}/{name}", version=0)  # still untouched
        pending.rawlink(settled)

    def _release_orphans(self) -> None:
        for name, fence in list(self._orphans):  # kept until handled: a call here may fail
            (found,) = self._calls.read(f"{self._claims}/{name}")
            if found is not None and decode_claim(found[0]).get("fence") == fence:
                with contextlib.suppress(kz.NoNodeError, kz.BadVersionError):
                    self._calls.result(self._calls.live().delete_async(f"{self._claims}/{name}",
                                                           version=found[1].version))
                    logger.info("board %r released claim %s whose reply was lost",
                                self.name, name)
                    self._forget_hold(name)
                    self._index.unclaimed(name)  # our own claim nodes fire no events
            with contextlib.suppress(ValueError):
                self._orphans.remove((name, fence))

    def _held(self, job_uuid: str, who: str, fence: int | None) -> Held:
        """``who``'s live claim on the job (with ``fence``, unless None).

        Raises:
            NotFound: the job is gone.
            NotOwner: the claim is missing, expired, someone else's or has another fence.
        """
        name = self._name_of(job_uuid)
        job, claim = self._calls.read(f"{self._jobs}/{name}", f"{self._claims}/{name}")
        record = None if job is None else self._decode_job(name, job[0])
        if job is None or record is None:
            if job is None:
                self._index.remove(name)
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        if claim is None:
            raise not_owner(job_uuid, who, None, fence=fence, actual_fence=record.fence)
        data = decode_claim(claim[0])
        live = self._follower.claim_ends(*claim) > self.clock()
        actual = data.get("owner") if live else None
        # The claim's session is not checked: a claim may be finished through any board
        # object. The fence is what tells one claim from another (see ``_end_claim``).
        if actual != who or (fence is not None and data.get("fence") != fence):
            raise not_owner(job_uuid, who, actual, fence=fence, actual_fence=record.fence)
        return Held(name, data, claim[1].version, record, job[1].version)

    def _end_claim(self, job_uuid: str, who: str, fence: int | None,
                   ops: Callable[[Any, Held], None]) -> tuple[Held, list[Any]]:
        """Check the claim, then commit ``ops`` against the versions read; when something
        changed in between, check again (which raises ``NotOwner``/``NotFound`` if need be).

        ``ops`` must check the job node's version (by writing or deleting it with that version,
        or with ``check``): every claim rewrites the job node with the next fence, so that is
        what proves, in the same transaction, that no claim came since the one checked. The
        claim node's own version proves nothing alone: a claim node created again, by another
        session, starts at version 0 again.

        A claim this board made (or renewed) and still remembers, unexpired, is committed
        against the versions it remembers without reading first; any change fails the
        transaction and the claim is then read and checked as usual.
        """
        held = self._remembered(job_uuid, who, fence)
        for _ in range(_RETRIES):
            if held is None:
                held = self._held(job_uuid, who, fence)

            def bound(txn: Any, held: Held = held) -> None:
                ops(txn, held)

            results = self._calls.commit(bound)
            if failure_of(results) is None:
                return held, results
            self._forget_hold(held.name)
            held = None
        raise errors.JobFailure(f"job {job_uuid} kept changing", job_uuid=job_uuid)

    def _remember_hold(self, held: Held) -> None:
        with self._holds_lock:
            self._holds[held.name] = held

    def _forget_hold(self, name: str) -> None:
        with self._holds_lock:
            self._holds.pop(name, None)

    def _remembered(self, job_uuid: str, who: str, fence: int | None) -> Held | None:
        name = self._index.lookup(job_uuid)
        with self._holds_lock:
            held = self._holds.get(name) if name is not None else None
        if (held is None or held.claim.get("owner") != who
                or claim_expiry(held.claim) <= self.clock()):
            return None
        return held if fence is None or held.claim.get("fence") == fence else None

    def _renew(self, job_uuid: str, who: str, fence: int | None, ttl: float) -> str | None:
        expires = self.clock() + ttl
        renewed: dict[str, Any] = {}

        def ops(txn: Any, held: Held) -> None:
            # Writing the claim node also proves our session is alive. The job node's version
            # proves no other claim came since ours: a claim node another session created
            # starts at version 0 again, but its claim rewrote the job node (its fence).
            renewed.update(held.claim, ttl=ttl, expires_at=expires, renewed_at=self.clock())
            txn.set_data(f"{self._claims}/{held.name}", json.dumps(renewed).encode(),
                         version=held.claim_version)
            txn.check(f"{self._jobs}/{held.name}", held.job_version)

        held, results = self._end_claim(job_uuid, who, fence, ops)
        self._follower.server_clock.learn(results[0])
        self._follower.after_events(functools.partial(self._index.claimed, held.name, expires))
        self._remember_hold(dataclasses.replace(held, claim=dict(renewed),
                                                claim_version=int(results[0].version)))
        # A cancel rewrites the job node: a remembered hold then fails the version check and
        # the job node is read again, so the mark seen here is never older than the renewal.
        return held.record.cancel

    def _cancel(self, job_uuid: str, mark: str) -> bool:
        """One transaction against the versions read: with a live claim, rewrite the job node
        with the mark (checking the claim node's version too); otherwise move the job to the
        trash (deleting a lapsed claim node)."""
        mark = bounded(mark) or mark
        for _ in range(_RETRIES):
            name = self._name_of(job_uuid)
            job, claim = self._calls.read(f"{self._jobs}/{name}", f"{self._claims}/{name}")
            record = None if job is None else self._decode_job(name, job[0])
            if job is None or record is None:
                if job is None:
                    self._index.remove(name)
                raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
            now = self.clock()
            if claim is not None and self._follower.claim_ends(*claim) > now:
                if self._mark_cancelled(name, record, mark, now, job[1].version,
                                        claim[1].version):
                    return False
                continue
            if self._trash_cancelled(name, record, mark, now, job[1].version,
                                     None if claim is None else claim[1].version):
                return True
        raise errors.JobFailure(f"job {job_uuid} kept changing", job_uuid=job_uuid)

    def _trash_cancelled(self, name: str, record: JobRecord, mark: str, now: float,
                         job_version: int, claim_version: int | None) -> bool:
        """Move the unclaimed job to the trash with ``mark`` as its reason, deleting a lapsed
        claim node, unless either changed since read (False: read again)."""
        stored = {**json.loads(encode_job(dataclasses.replace(
            record, reason=mark, last_modified=now))), "trashed_at": now}

        def ops(txn: Any) -> None:
            txn.create(f"{self._trash_root}/{name}", json.dumps(stored).encode())
            if claim_version is not None:
                txn.delete(f"{self._claims}/{name}", version=claim_version)
            txn.delete(f"{self._jobs}/{name}", version=job_version)

        if failure_of(self._calls.commit(ops)) is not None:
            return False
        self._forget_hold(name)
        self._index.remove(name)
        return True

    def _mark_cancelled(self, name: str, record: JobRecord, mark: str, now: float,
                        job_version: int, claim_version: int) -> bool:
        """Rewrite the claimed job's node with its cancel mark, unless the job or its claim
        changed since read (False: read again)."""
        data = encode_job(dataclasses.replace(record, cancel=mark, last_modified=now))

        def ops(txn: Any) -> None:
            txn.set_data(f"{self._jobs}/{name}", data, version=job_version)
            txn.check(f"{self._claims}/{name}", claim_version)

        self._index.writing(name)
        try:
            return failure_of(self._calls.commit(ops)) is None
        finally:
            self._written(name)

    def _consume_ops(self, txn: Any, held: Held) -> None:
        txn.delete(f"{self._claims}/{held.name}", version=held.claim_version)
        txn.delete(f"{self._jobs}/{held.name}", version=held.job_version)

    def _consume(self, job_uuid: str, who: str, fence: int | None) -> None:
        held, _ = self._end_claim(job_uuid, who, fence, self._consume_ops)
        self._forget_hold(held.name)
        self._index.remove(held.name)

    def _abandon(self, job_uuid: str, who: str, fence: int | None, delay: float,
                 reason: str | None) -> None:
        now = self.clock()
        self._unclaim(job_uuid, who, fence, now=now,
                      available_at=now + delay if delay > 0 else None, reason=bounded(reason))

    def _release(self, job_uuid: str, who: str, fence: int | None) -> None:
        self._unclaim(job_uuid, who, fence, now=self.clock(), available_at=None, uncount=True)

    def _unclaim(self, job_uuid: str, who: str, fence: int | None, *, now: float,
                 available_at: float | None, reason: str | None = None,
                 uncount: bool = False) -> None:
        """End the claim and rewrite the job node, in one transaction: claimable from
        ``available_at`` on, with ``reason``, or (``uncount``) with its reason kept and one
        attempt fewer. The job keeps its place in claim order (its node's name)."""
        written: list[bytes] = []

        def ops(txn: Any, held: Held) -> None:
            changes: dict[str, Any] = {"available_at": available_at, "last_modified": now}
            if uncount:
                changes["attempts"] = max(held.record.attempts - 1, 0)
            else:
                changes["reason"] = reason
            written[:] = [encode_job(dataclasses.replace(held.record, **changes))]
            txn.delete(f"{self._claims}/{held.name}", version=held.claim_version)
            txn.set_data(f"{self._jobs}/{held.name}", written[0], version=held.job_version)
            # Tells other boards, through their watch on jobs/, that there is no claim node.
            txn.create(f"{self._jobs}/{held.name}/{UNCLAIMED}")
            txn.delete(f"{self._jobs}/{held.name}/{UNCLAIMED}")

        name = self._name_of(job_uuid)
        self._index.writing(name)
        outcome = None
        try:
            held, results = self._end_claim(job_uuid, who, fence, ops)
            self._follower.server_clock.learn(results[1])
            self._forget_hold(held.name)
            outcome = functools.partial(self._index.unclaimed, held.name, available_at,
                                        (written[0], int(results[1].version)))
        finally:
            self._written(name, outcome, unclaim=True)

    def _trash(self, job_uuid: str, who: str, fence: int | None, reason: str | None) -> None:
        now = self.clock()

        def ops(txn: Any, held: Held) -> None:
            record = dataclasses.replace(held.record, reason=bounded(reason), last_modified=now)
            stored = {**json.loads(encode_job(record)), "trashed_at": now}
            txn.create(f"{self._trash_root}/{held.name}", json.dumps(stored).encode())
            txn.delete(f"{self._claims}/{held.name}", version=held.claim_version)
            txn.delete(f"{self._jobs}/{held.name}", version=held.job_version)

        held, _ = self._end_claim(job_uuid, who, fence, ops)
        self._forget_hold(held.name)
        self._index.remove(held.name)

    def _requeue(self, trashed_uuid: str, record: JobRecord) -> None:
        names = self._calls.result(self._calls.live().get_children_async(self._trash_root))
        found = [n for n in names if job_key(n) is not None and uuid_of(n) == trashed_uuid]
        if not found:
            raise errors.NotFound(f"no job {trashed_uuid} in the trash of board {self.name!r}")
        data = encode_job(record)
        prefix = f"{self._jobs}/{job_name_prefix(record.priority, record.uuid)}"

        def ops(txn: Any) -> None:
            for name in found:
                txn.delete(f"{self._trash_root}/{name}")
            txn.create(prefix, data, sequence=True)

        results = self._calls.commit(ops)
        failure = failure_of(results)
        if isinstance(failure, kz.NoNodeError):  # requeued meanwhile (or jobs/ is gone)
            self._check_epoch()
            raise errors.NotFound(f"no job {trashed_uuid} in the trash of board {self.name!r}")
        if failure is not None:
            raise failure
        name = str(results[-1]).rsplit("/", 1)[1]
        self._index.add(name, record.available_at, (data, 0))
        key = job_key(name)
        record.sequence = key[1] if key is not None else 0

    def _iter_trash(self) -> Iterator[JobRecord]:
        names = self._calls.result(self._calls.live().get_children_async(self._trash_root))
        found = self._calls.read(*(f"{self._trash_root}/{n}" for n in names))
        trashed: list[tuple[float, int, JobRecord]] = []
        for name, item in zip(names, found, strict=True):
            record = None if item is None else self._decode_job(name, item[0])
            if record is not None and item is not None:
                when = json.loads(item[0]).get("trashed_at")
                trashed.append((float(when or 0.0), int(item[1].czxid), record))
        trashed.sort(key=lambda t: (t[0], t[1]), reverse=True)
        yield from (record for _, _, record in trashed)

    # -- waiting ---------------------------------------------------------------------------

    def _note_generation(self) -> None:
        """Remember, per thread, which state of the index the caller last looked at."""
        self._local.generation = self._index.generation

    def _wait_for_change(self, timeout: float) -> bool:
        seen = getattr(self._local, "generation", None)

        def changed() -> bool:
            client = self._calls.client
            return (seen is None or self._index.generation != seen or client is None
                    or client.state != KazooState.CONNECTED)

        self._index.wait_for(changed, timeout)
        return False

    # -- entities --------------------------------------------------------------------------

    def _register_entity(self, entity: Entity, ttl: float) -> None:
        self._entities.register(entity, ttl)

    def _unregister_entity(self, entity: Entity) -> None:
        self._entities.unregister(entity)

    def _iter_entities(self) -> Iterator[Entity]:
        return iter(self._entities)


def _spread(lost: int) -> int:
    """How far past the first candidate to look after losing ``lost`` races in a row."""
    return random.randrange(min(2 ** lost, 16)) if lost else 0


def _epoch_of(stat: Any) -> str | None:
    """A node's creation zxid (hex), the epoch of the data under it; None when it is gone."""
    return None if stat is None else f"{stat.czxid:x}"


def shutdown(client: Any) -> None:
    """Stop a kazoo client (its ephemeral nodes end with its session) and free its threads."""
    with contextlib.suppress(Exception):
        client.stop()
    with contextlib.suppress(Exception):
        client.close()
