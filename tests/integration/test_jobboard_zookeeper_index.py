"""The ZooKeeper board's in-memory index (no server needed): order, listings with the events that
came while they were made, reservations, lease expiry, delays, and data read ahead."""

from __future__ import annotations

from legato.jobboard.zookeeper.index import (
    CHANGED,
    CLAIMS,
    CREATED,
    DELETED,
    JOBS,
    UNCLAIMED,
    Index,
    job_key,
    job_name_prefix,
    uuid_of,
)


def _name(priority: int, uuid: str, seq: int) -> str:
    return f"{job_name_prefix(priority, uuid)}{seq:010d}"


def _all(index: Index, now: float = 0.0, *, only_unclaimed: bool = False) -> list[str]:
    return [key[2] for key in index.page(None, now, only_unclaimed=only_unclaimed, limit=1000)]


def _synced(jobs: list[str], claims: list[str] | None = None) -> Index:
    index = Index()
    assert index.finish_sync(index.begin_sync(), jobs, claims or []) is not None
    return index


def test_names_round_trip() -> None:
    name = _name(-2, "0b7c-uuid-with-dashes", 42)
    assert uuid_of(name) == "0b7c-uuid-with-dashes"
    assert job_key(name) == (2, 42, name)
    assert job_key("stray") is None


def test_order_is_priority_then_post_sequence() -> None:
    names = [_name(0, "a", 1), _name(2, "b", 2), _name(-1, "c", 3), _name(2, "d", 4),
             _name(0, "e", 5)]
    index = _synced(names[:3])
    index.event(JOBS, CREATED, names[3])
    index.add(names[4], None)
    assert _all(index) == [names[1], names[3], names[0], names[4], names[2]]
    assert index.page(job_key(names[3]), 0.0, only_unclaimed=False, limit=2) == [
        job_key(names[0]), job_key(names[4])]
    index.event(JOBS, DELETED, names[1])
    assert _all(index)[0] == names[3] and index.lookup("b") is None and index.known_gone("b")
    assert index.count() == 4


def test_events_during_a_listing_are_replayed_on_top_of_it() -> None:
    a, b, c = (_name(0, u, i) for i, u in enumerate("abc"))
    index = Index()
    epoch = index.begin_sync()
    # Listings are requested now; these events come before their replies.
    index.event(JOBS, DELETED, a)
    index.event(JOBS, CREATED, c)
    index.event(JOBS, CHANGED, b)  # claimed
    assert not index.synced
    # The listings were made before those changes: they still show a, and not c or b's claim.
    assert index.finish_sync(epoch, [a, b], []) == [b]
    assert index.synced and _all(index) == [b, c]
    assert index.take(0.0) == c  # whether b is claimed is not read yet: passed over
    index.desync()
    assert not index.synced


def test_a_listing_from_an_older_connection_is_not_applied() -> None:
    a = _name(0, "a", 1)
    index = Index()
    epoch = index.begin_sync()
    index.desync()  # the connection changed while listing
    assert index.finish_sync(epoch, [a], []) is None
    assert not index.synced and _all(index) == []


def test_take_reserves_distinct_jobs_and_skips_live_and_unread_claims() -> None:
    a, b, c, d = (_name(0, u, i) for i, u in enumerate("abcd"))
    index = _synced([a, b, c, d], [a])
    assert index.unknown_claims() == [a]
    assert index.take(10.0) == b  # a's claim is unread: passed over
    index.claimed(a, 20.0, seen=index.token())
    assert index.take(10.0) == c  # b is reserved, a is claimed until 20
    assert index.take(10.0) == d
    assert index.take(10.0) is None
    index.release(b)
    assert index.take(10.0) == b
    assert index.take(25.0) == a  # its lease ran out at 20
    assert _all(index, 10.0, only_unclaimed=True) == [b, c, d]
    index.event(CLAIMS, DELETED, a)
    assert _all(index, 10.0, only_unclaimed=True) == [a, b, c, d]


def test_reads_sent_before_an_event_are_dropped() -> None:
    a = _name(0, "a", 1)
    index = _synced([a], [a])
    token = index.token()
    index.event(CLAIMS, CHANGED, a)  # renewed by someone: unknown until read again
    index.claimed(a, 99.0, seen=token)  # a read sent before the renewal
    assert index.unknown_claims() == [a]
    index.claimed(a, 50.0, seen=index.token())
    assert index.unknown_claims() == [] and index.take(10.0) is None
    token = index.token()
    index.event(JOBS, CHANGED, a)
    index.job_data(a, (b"old", 1), seen=token)
    index.no_claim(a, seen=token)
    assert index.unknown_claims() == [a]  # both reads were sent before the change
    index.event(CLAIMS, DELETED, a)
    assert index.cached(a) is None
    index.job_data(a, (b"new", 2), seen=index.token())
    assert index.cached(a) == (b"new", 2)


def test_the_end_of_a_claim_made_elsewhere_is_known_from_its_marker() -> None:
    a, b = _name(0, "a", 1), _name(0, "b", 2)
    index = _synced([a, b])
    index.event(JOBS, CHANGED, a)  # claimed by another board: whether it still is, is unknown
    assert index.take(0.0) == b
    index.release(b)
    token = index.token()
    # Abandoned or released: the transaction rewrites the job node, then creates and deletes
    # the marker under it.
    index.event(JOBS, CHANGED, a)
    index.event(JOBS, CREATED, f"{a}/{UNCLAIMED}")
    assert index.take(0.0) == b  # not yet: the marker's deletion is the transaction's last event
    index.release(b)
    index.event(JOBS, DELETED, f"{a}/{UNCLAIMED}")
    index.claimed(a, 99.0, seen=token)  # a read sent before the claim ended is dropped
    assert index.unknown_claims() == [] and _all(index) == [a, b]
    assert index.take(0.0) == a
    index.event(JOBS, DELETED, f"{b}/other")  # other children change nothing
    assert index.take(0.0) == b


def test_claims_in_unknown_state_are_read_when_they_stand_in_the_way() -> None:
    a, b, c, d = (_name(0, u, i) for i, u in enumerate("abcd"))
    index = _synced([a, b, c, d])
    index.event(JOBS, CHANGED, a)  # claimed (or abandoned) elsewhere
    index.writing(b)
    index.event(JOBS, CHANGED, b)  # this process's own claim of b
    index.claimed(b, 100.0)
    assert index.written(b) is False  # b's state is known: nothing to read
    assert index.take(10.0) == c  # a is unknown, b is claimed
    assert index.to_fetch(10.0, 1) == ([d], [a])  # a stands before the next candidate, d
    assert index.reading([a, c]) == [a, c] and index.reading([a]) == []  # being read
    assert index.to_fetch(10.0, 1) == ([], [])
    index.read_done(a)
    index.no_claim(a, seen=index.token())  # it was abandoned
    index.release(c)
    assert index.take(10.0) == a
    index.writing(d)
    index.event(JOBS, CHANGED, d)  # someone else's claim, while ours was sent
    assert index.written(d) is True  # ours failed: whether d is claimed is left to read
    index.event(CLAIMS, CHANGED, b)  # a watched claim was renewed
    assert index.unknown_claims() == [b, d]
    assert index.claim_exists(b) is False  # known to exist already
    index.event(CLAIMS, DELETED, b)
    assert index.claim_exists(b) is True  # a transaction found one the events have not shown


def test_data_is_known_only_while_nothing_changed_it() -> None:
    a, b, c = (_name(0, u, i) for i, u in enumerate("abc"))
    index = _synced([])
    index.add(a, None, (b"posted", 0))
    index.event(JOBS, CREATED, b)
    index.event(JOBS, CREATED, c)
    assert index.cached(a) == (b"posted", 0)
    assert index.to_fetch(0.0, 2) == ([b], [])  # a is known; only the next two are looked at
    assert index.to_fetch(0.0, 3) == ([c], [])  # b is being read already
    index.job_data(b, None, seen=index.token())  # that read failed
    assert index.to_fetch(0.0, 3, batch=2) == ([], [])  # one is missing, and not the first
    assert index.to_fetch(0.0, 3) == ([b], [])
    index.event(JOBS, CHANGED, a)  # claimed or abandoned elsewhere
    assert index.cached(a) is None
    index.no_claim(a, seen=index.token())
    index.unclaimed(a, None, (b"abandoned", 3))
    assert index.cached(a) == (b"abandoned", 3)
    index.stale(a)
    assert index.cached(a) is None
    index.event(JOBS, DELETED, a)
    index.unclaimed(a, None, (b"late", 4))  # gone: nothing to keep
    assert index.cached(a) is None and _all(index) == [b, c]


def test_delays_are_forgotten_when_the_job_changes() -> None:
    a, b = _name(0, "a", 1), _name(0, "b", 2)
    index = _synced([b])
    index.add(a, None)
    index.unclaimed(a, 50.0)  # abandoned here with a delay
    assert _all(index, 10.0, only_unclaimed=True) == [b]
    assert _all(index, 60.0, only_unclaimed=True) == [a, b]
    index.event(JOBS, CHANGED, a)  # abandoned again elsewhere: the delay is unknown now
    index.no_claim(a, seen=index.token())
    assert _all(index, 10.0, only_unclaimed=True) == [a, b]
    token = index.token()
    index.delayed(a, 40.0, seen=token)
    assert index.take(10.0) == b
    index.event(JOBS, CHANGED, a)
    index.delayed(a, 45.0, seen=token)  # read before that change: dropped
    index.no_claim(a, seen=index.token())
    assert index.take(10.0) == a


def test_take_can_skip_ahead_after_lost_races() -> None:
    names = [_name(0, u, i) for i, u in enumerate("abcd")]
    index = _synced(names)
    assert index.take(0.0, skip=2) == names[2]
    assert index.take(0.0, skip=9) == names[3]  # fewer left than asked: the last one
    assert index.take(0.0) == names[0]


def test_garbage_and_foreign_names_are_skipped() -> None:
    a, b = _name(0, "a", 1), _name(0, "b", 2)
    index = _synced([a, b, "stray"])
    assert index.garbage(a) is True and index.garbage(a) is False
    assert index.take(0.0) == b
    index.remove(a)
    assert index.count() == 1 and _all(index) == [b]


def test_wait_for_wakes_on_a_change_made_by_another_thread() -> None:
    """``wait_for`` returns once a change (an event from kazoo's thread, here another thread)
    makes its predicate true; with nothing changing it returns the predicate's last value."""
    import threading

    index = _synced([_name(0, "a", 1)])
    seen = index.generation
    assert index.wait_for(lambda: index.generation != seen, 0.0) is False
    woken: list[bool] = []
    waiting = threading.Thread(
        target=lambda: woken.append(index.wait_for(lambda: index.generation != seen, 30.0)))
    waiting.start()
    index.event(JOBS, CREATED, _name(0, "b", 2))
    waiting.join(30.0)
    assert woken == [True]
    assert index.wait_for(lambda: index.generation != seen, 0.0) is True


def test_scans_pass_over_jobs_being_written_delayed_or_claimed() -> None:
    """``take`` and ``to_fetch`` skip entries that cannot be claimed now, whichever flag says
    so, and offer the rest in claim order."""
    names = [_name(0, u, seq) for seq, u in enumerate("abcde", start=1)]
    index = _synced(names)
    index.writing(names[0])  # this process is writing it
    index.unclaimed(names[1], available_at=10.0)  # delayed until 10
    index.claimed(names[2], expires=10.0)  # claimed until 10
    fetch, claims = index.to_fetch(5.0, 8)
    assert (fetch, claims) == ([names[3], names[4]], [])
    assert index.take(5.0) == names[3]
    assert index.take(5.0) == names[4]
    assert index.take(5.0) is None
    assert index.take(20.0) == names[1]  # the delay and the claim are over
    assert index.take(20.0) == names[2]


def test_jobs_are_found_by_uuid_and_forgotten_when_deleted_whatever_their_priority() -> None:
    """The uuid of a job node name, taken apart by slicing where events add and drop entries,
    is the one ``uuid_of`` reads (negative priorities and uuids with dashes included)."""
    names = [_name(-12, "d1e2-f3a4", 7), _name(0, "a-b-c", 1), _name(5, "x", 9_999_999_999)]
    index = _synced([])
    for name in names:
        index.event(JOBS, CREATED, name)
    for name in names:
        assert index.lookup(uuid_of(name)) == name
    for name in names:
        index.event(JOBS, DELETED, name)
        assert index.lookup(uuid_of(name)) is None and index.known_gone(uuid_of(name))
