"""A graph flow drawn as layers: each atom in the column after its latest predecessor, edges
as lines between the boxes. Positions only; the job page's template draws the SVG."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["layout"]

#: Box size and gaps, in SVG user units.
BOX_W, BOX_H = 160, 26
GAP_X, GAP_Y = 50, 12
#: Characters of an atom's name shown in its box (the full name is its tooltip).
LABEL_CHARS = 22


def _edges_of(raw: Any, names: set[str]) -> list[tuple[str, str]] | None:
    """``meta["edges"]`` checked: pairs of known atom names (None when malformed)."""
    if not isinstance(raw, list):
        return None
    edges = []
    for pair in raw:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            return None
        before, after = pair
        if before not in names or after not in names or before == after:
            return None
        edges.append((str(before), str(after)))
    return edges


def _layers(order: Sequence[str], edges: list[tuple[str, str]]) -> dict[str, int] | None:
    """Each atom's column: 0 without predecessors, else one past its latest predecessor's
    (None for a cycle, which a compiled flow never has)."""
    preds: dict[str, list[str]] = {name: [] for name in order}
    succs: dict[str, list[str]] = {name: [] for name in order}
    for before, after in edges:
        preds[after].append(before)
        succs[before].append(after)
    waiting = {name: len(preds[name]) for name in order}
    ready = deque(name for name in order if not waiting[name])
    layer: dict[str, int] = {}
    while ready:
        name = ready.popleft()
        layer[name] = max((layer[p] + 1 for p in preds[name]), default=0)
        for nxt in succs[name]:
            waiting[nxt] -= 1
            if not waiting[nxt]:
                ready.append(nxt)
    return layer if len(layer) == len(order) else None


def layout(atoms: Sequence[dict[str, Any]], raw_edges: Any) -> dict[str, Any] | None:
    """Boxes and lines for ``atoms`` (the job page's atom rows, in run order) joined by
    ``raw_edges`` (a flow detail's ``meta["edges"]``); None when the flow has no usable
    edges (it is shown as a list)."""
    order = [str(atom["name"]) for atom in atoms]
    edges = _edges_of(raw_edges, set(order))
    if edges is None:
        return None
    layer = _layers(order, edges)
    if layer is None:
        return None
    rows: dict[int, int] = {}
    boxes: dict[str, dict[str, Any]] = {}
    for atom in atoms:
        name = str(atom["name"])
        column = layer[name]
        row = rows.get(column, 0)
        rows[column] = row + 1
        label = name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"
        boxes[name] = {
            "name": name,
            "label": label,
            "state": atom["state"],
            "x": column * (BOX_W + GAP_X) + 4,
            "y": row * (BOX_H + GAP_Y) + 4,
        }
    lines = [
        {
            "before": before,
            "after": after,
            "x1": boxes[before]["x"] + BOX_W,
            "y1": boxes[before]["y"] + BOX_H // 2,
            "x2": boxes[after]["x"],
            "y2": boxes[after]["y"] + BOX_H // 2,
        }
        for before, after in edges
    ]
    return {
        "boxes": list(boxes.values()),
        "lines": lines,
        "width": (max(layer.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X + 8,
        "height": max(rows.values(), default=1) * (BOX_H + GAP_Y) - GAP_Y + 8,
        "box_w": BOX_W,
        "box_h": BOX_H,
    }
