"""``legato._tracing.from_environment``: the W3C trace context a process is handed."""

from __future__ import annotations

import pytest

from legato import _tracing

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_no_traceparent_is_no_trace() -> None:
    assert _tracing.from_environment({}) is None
    assert _tracing.from_environment({"TRACEPARENT": "  "}) is None


def test_a_traceparent_and_its_state_become_the_carrier() -> None:
    assert _tracing.from_environment({"TRACEPARENT": GOOD}) == {"traceparent": GOOD}
    assert _tracing.from_environment({"TRACEPARENT": GOOD, "TRACESTATE": "a=1,b=2"}) == {
        "traceparent": GOOD, "tracestate": "a=1,b=2"}


@pytest.mark.parametrize("value", [
    "00-not-a-trace-01",
    GOOD.upper(),
    "ff" + GOOD[2:],                                   # the forbidden version
    "00-" + "0" * 32 + "-00f067aa0ba902b7-01",         # an all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
    GOOD + "-extra",
])
def test_a_malformed_traceparent_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a W3C traceparent"):
        _tracing.from_environment({"TRACEPARENT": value})


def test_an_unprintable_tracestate_is_refused() -> None:
    with pytest.raises(ValueError, match="TRACESTATE"):
        _tracing.from_environment({"TRACEPARENT": GOOD, "TRACESTATE": "a=1\nb=2"})
