"""Graph flows on the job page: the engine records the compiled flow's edges once, and the
page draws them; a linear flow stays a list."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from legato import engine  # noqa: E402
from legato.dashboard import _graph  # noqa: E402
from legato.dashboard.app import create_app  # noqa: E402
from legato.flow import GraphFlow, LinearFlow, Task  # noqa: E402
from legato.jobboard.base import JobBoard  # noqa: E402
from legato.persistence.base import Persistence  # noqa: E402
from legato.persistence.models import FlowDetail, LogBook  # noqa: E402
from legato.testing.dashboard import running  # noqa: E402


class Make(Task):
    def execute(self, **inputs: Any) -> int:
        return len(inputs)


def diamond() -> GraphFlow:
    """start -> left, right -> end (from what each requires)."""
    return GraphFlow("diamond").add(
        Make("start", provides="a"),
        Make("left", requires=["a"], provides="b"),
        Make("right", requires=["a"], provides="c"),
        Make("end", requires=["b", "c"]),
    )


def line() -> LinearFlow:
    return LinearFlow("line").add(Make("one"), Make("two"), Make("three"))


def _run_as_job(board: JobBoard, store: Persistence, flow: Any, name: str) -> tuple[str, str]:
    """Post a job for ``flow``'s logbook and run the flow into it; (job uuid, flow uuid)."""
    book = LogBook(name)
    detail = FlowDetail(name)
    book.add(detail)
    store.save_logbook(book)
    job = board.post(name, book, {"flow_uuid": detail.uuid})
    engine.run(flow, persistence=store, flow_detail=store.get_flow_details(detail.uuid))
    return job.uuid, detail.uuid


def test_a_graph_flow_records_its_edges_once_and_a_line_none(stack: Any) -> None:
    board, store = stack
    _, graph_uuid = _run_as_job(board, store, diamond(), "graph-job")
    _, line_uuid = _run_as_job(board, store, line(), "line-job")
    edges = store.get_flow_details(graph_uuid).meta["edges"]
    assert sorted(map(tuple, edges)) == [
        ("left", "end"),
        ("right", "end"),
        ("start", "left"),
        ("start", "right"),
    ]
    assert "edges" not in store.get_flow_details(line_uuid).meta


def test_the_job_page_draws_a_graph_flows_edges_and_lists_a_line(stack: Any) -> None:
    board, store = stack
    graph_job, _ = _run_as_job(board, store, diamond(), "graph-job")
    line_job, _ = _run_as_job(board, store, line(), "line-job")
    with (
        running(create_app(board, store)) as url,
        httpx.Client(base_url=url, timeout=30) as web,
    ):
        page = web.get(f"/jobs/{graph_job}").text
        assert '<svg class="graph"' in page
        for edge in ("start->left", "start->right", "left->end", "right->end"):
            assert f'data-edge="{edge}"' in page
        assert page.count('<g class="node SUCCESS"') == 4
        api = web.get(f"/api/jobs/{graph_job}").json()
        lines = api["flows"][0]["graph"]["lines"]
        assert {(e["before"], e["after"]) for e in lines} == {
            ("start", "left"),
            ("start", "right"),
            ("left", "end"),
            ("right", "end"),
        }
        listed = web.get(f"/jobs/{line_job}").text
        assert '<svg class="graph"' not in listed
        assert listed.count('<li class="atom SUCCESS"') == 3


def test_layout_puts_each_atom_after_its_latest_predecessor() -> None:
    atoms = [{"name": n, "state": "PENDING"} for n in ("a", "b", "c", "d")]
    drawn = _graph.layout(atoms, [["a", "b"], ["b", "c"], ["a", "c"], ["a", "d"]])
    assert drawn is not None
    columns = {box["name"]: box["x"] for box in drawn["boxes"]}
    assert columns["a"] < columns["b"] == columns["d"] < columns["c"]
    # Edges that are not pairs of known atoms, or make a cycle, give no graph: a list.
    assert _graph.layout(atoms, [["a", "zz"]]) is None
    assert _graph.layout(atoms, [["a", "b"], ["b", "a"]]) is None
    assert _graph.layout(atoms, "a->b") is None
    assert _graph.layout(atoms, None) is None


def test_a_hostile_atom_name_in_the_graph_is_text(stack: Any) -> None:
    board, store = stack
    flow = GraphFlow("hostile").add(
        Make("<script>x</script>", provides="a"), Make("after", requires=["a"])
    )
    job, _ = _run_as_job(board, store, flow, "hostile-job")
    with contextlib.ExitStack() as stack_:
        url = stack_.enter_context(running(create_app(board, store)))
        page = httpx.get(f"{url}/jobs/{job}", timeout=30).text
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
