"""The ZooKeeper board's in-memory index (no server needed): order, stale listings, reservations,
lease expiry and delays."""

from __future__ import annotations

import time

from legato.jobboard._zkindex import Index, job_key, job_name_prefix, uuid_of


def _name(priority: int, uuid: str, seq: int) -> str:
    return f"{job_name_prefix(priority, uuid)}{seq:010d}"


def _all(index: Index, now: float = 0.0, *, only_unclaimed: bool = False) -> list[str]:
    return [key[2] for key in index.page(None, now, only_unclaimed=only_unclaimed, limit=1000)]


def test_names_round_trip() -> None:
    name = _name(-2, "0b7c-uuid-with-dashes", 42)
    assert uuid_of(name) == "0b7c-uuid-with-dashes"
    assert job_key(name) == (2, 42, name)
    assert job_key("stray") is None


def test_order_is_priority_then_post_sequence() -> None:
    index = Index()
    names = [_name(0, "a", 1), _name(2, "b", 2), _name(-1, "c", 3), _name(2, "d", 4),
             _name(0, "e", 5)]
    index.set_jobs(names[:3])
    for name in names[3:]:
        index.add(name, None)
    assert _all(index) == [names[1], names[3], names[0], names[4], names[2]]
    assert index.page(job_key(names[3]), 0.0, only_unclaimed=False, limit=2) == [
        job_key(names[0]), job_key(names[4])]
    bulk = [_name(0, f"u{i}", 100 + i) for i in range(100)]  # the bulk-load path
    index.set_jobs(names + bulk[::-1])
    assert _all(index)[4:-1] == bulk and _all(index)[-1] == names[2]


def test_stale_listing_does_not_bring_back_a_removed_job() -> None:
    index = Index()
    a, b = _name(0, "a", 1), _name(0, "b", 2)
    index.set_jobs([a, b])
    index.remove(a)
    index.set_jobs([a, b])  # fetched before the delete reached the server
    assert _all(index) == [b] and index.lookup("a") is None and index.known_gone("a")
    index.set_jobs([b])
    index.set_jobs([b, a])  # cannot really happen, but the tombstone is gone by now
    assert index.lookup("a") == a


def test_take_reserves_distinct_jobs_and_skips_live_claims() -> None:
    index = Index()
    a, b, c = (_name(0, u, i) for i, u in enumerate("abc"))
    index.set_jobs([a, b, c])
    assert index.set_claims([a], issued=time.monotonic()) == [a]  # expiry unknown: worth a try
    assert index.take(10.0) == a
    index.claimed(a, 20.0, seen_at=time.monotonic())
    assert index.take(10.0) == b  # a is reserved (and claimed), b is free
    assert index.take(10.0) == c
    assert index.take(10.0) is None
    index.release(b)
    assert index.take(10.0) == b
    index.release(a)
    assert index.take(25.0) == a  # its lease ran out at 20
    assert _all(index, 10.0, only_unclaimed=True) == [b, c]


def test_delays_and_claims_that_come_and_go_unseen() -> None:
    index = Index()
    a, b = _name(0, "a", 1), _name(0, "b", 2)
    index.add(a, 50.0)
    index.set_jobs([a, b])
    assert _all(index, 10.0, only_unclaimed=True) == [b]
    assert _all(index, 60.0, only_unclaimed=True) == [a, b]
    index.set_claims([b], issued=time.monotonic())
    index.claimed(b, 100.0, seen_at=time.monotonic())
    assert _all(index, 10.0, only_unclaimed=True) == []
    # A watch fired but the listing is unchanged: a claim was replaced or came and went, so
    # what was read of delays and expiries is forgotten and read again.
    assert index.set_claims([b], issued=time.monotonic(), watch_fired=True) == [b]
    assert _all(index, 10.0, only_unclaimed=True) == [a, b]


def test_own_claim_changes_beat_older_listings_and_reads() -> None:
    index = Index()
    a, b = _name(0, "a", 1), _name(0, "b", 2)
    index.set_jobs([a, b])
    before = time.monotonic()
    index.claimed(a, 100.0)  # claimed here, after a listing was requested at ``before``
    index.set_claims([], issued=before)
    assert _all(index, 10.0, only_unclaimed=True) == [b]
    index.set_claims([], issued=time.monotonic())  # newer, and a is not there: it is gone
    assert _all(index, 10.0, only_unclaimed=True) == [a, b]
    index.claimed(a, 100.0)
    before = time.monotonic()
    index.unclaimed(a)  # abandoned here: older listings and reads still show the claim
    index.claimed(a, 100.0, seen_at=before)
    index.set_claims([a], issued=before)
    assert index.take(10.0) == a


def test_take_can_skip_ahead_after_lost_races() -> None:
    index = Index()
    names = [_name(0, u, i) for i, u in enumerate("abcd")]
    index.set_jobs(names)
    assert index.take(0.0, skip=2) == names[2]
    assert index.take(0.0, skip=9) == names[3]  # fewer left than asked: the last one
    assert index.take(0.0) == names[0]


def test_garbage_is_skipped_by_take_and_forgotten_when_removed() -> None:
    index = Index()
    a, b = _name(0, "a", 1), _name(0, "b", 2)
    index.set_jobs([a, b])
    assert index.garbage(a) is True and index.garbage(a) is False
    assert index.take(0.0) == b
    index.remove(a)
    assert index.count() == 1
