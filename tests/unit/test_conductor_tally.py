"""The tally of counted failures a job carries in its board reason (``_job.Tally``)."""

from __future__ import annotations

from legato.conductor._job import MAX_LAST_REASON, MAX_TALLY, Tally, label_of, where_of

X = "\N{MULTIPLICATION SIGN}"


def test_tally_round_trips_through_the_reason_and_adds_up() -> None:
    tally = Tally.of(None)
    tally.add("factory refused: flow factory 'x' is not registered", "a@h1:12/abcd1234")
    tally.add("factory refused: again", "a@h1:13/ffff0000")  # a restart adds up
    tally.add("logbook not found: 1234 is not here", "b@h2:9/00000000")
    reason = tally.reason("logbook not found: 1234 is not here")
    assert reason == (f"logbook not found: 1234 is not here [so far: factory refused on a@h1 "
                      f"(2{X}), logbook not found on b@h2 (1{X})]")
    again = Tally.of(reason)
    assert again.counts == tally.counts
    assert Tally.last(reason) == "logbook not found: 1234 is not here"
    assert again.text() == f"factory refused on a@h1 (2{X}), logbook not found on b@h2 (1{X})"


def test_a_reason_without_a_tally_has_none() -> None:
    for reason in (None, "", "engine suspended", "odd ] text", "x [so far: nonsense]"):
        assert Tally.of(reason).text() == ""
    assert Tally().reason("plain") == "plain"


def test_hostile_labels_and_owners_cannot_break_the_tally() -> None:
    assert label_of(f"a [so far: x on y (9{X})], b: detail") == "a so far"
    assert label_of(None) == "failed" and label_of(": no label") == "failed"
    assert where_of("we(ird), name@host:1/tok") == "we_ird_name@host"
    tally = Tally()
    tally.add("bad (label), here: x", "we(ird), name@host:1/tok")
    assert Tally.of(tally.reason("last")).counts == tally.counts


def test_the_tally_and_the_last_reason_stay_bounded() -> None:
    tally = Tally()
    for n in range(MAX_TALLY + 5):
        tally.add(f"reason {n}: x", f"c{n}@h:1/t")
    assert len(tally.counts) == MAX_TALLY + 1
    assert tally.counts[("other reasons", "-")] == 5
    reason = tally.reason("y" * 50_000)
    assert reason is not None and len(reason) < MAX_LAST_REASON + 1000
    assert Tally.of(reason).counts == tally.counts
