"""Where the spec graph's nodes and labels go, in pixels, so that no label covers another
label or another node's marker.

Columns are topological generations; labels sit above the markers in even columns and
below them in odd ones. Each column is placed as close to the previous one as its labels'
estimated boxes allow, so the drawing is as narrow as the labels permit. Coordinates are
pixels at the drawing's natural size: shown larger, positions spread and the fixed-size
text only gets more room.
"""
from __future__ import annotations

from typing import Any

FONT_PX = 9          # label font size
CHAR_PX = 0.62 * FONT_PX   # average glyph width of the sans-serif label font
LINE_PX = 13         # label box height
MARKER_PX = 16       # marker diameter
GAP_PX = 3           # air between a marker and its label, and between boxes
ROW_PX = 48          # one unit of the U's vertical layout (a plain row; 1.5 per level)
MIN_STEP_PX = 24     # narrowest column step


Box = tuple[float, float, float, float]   # x0, y0, x1, y1 in pixels


def label_box(x: float, y: float, text: str, above: bool) -> Box:
    """The box a centred label takes above (or below) a marker at (x, y)."""
    w = CHAR_PX * len(text) + 2
    off = MARKER_PX / 2 + GAP_PX
    y0 = y + off if above else y - off - LINE_PX
    return (x - w / 2, y0, x + w / 2, y0 + LINE_PX)


def marker_box(x: float, y: float) -> Box:
    r = MARKER_PX / 2
    return (x - r, y - r, x + r, y + r)


def overlap(a: Box, b: Box) -> bool:
    return (a[0] < b[2] + GAP_PX and b[0] < a[2] + GAP_PX
            and a[1] < b[3] + GAP_PX and b[1] < a[3] + GAP_PX)


def rows(g: Any, gen: list[str]) -> dict[str, float]:
    """A generation's vertical positions in U units: stages by depth (1.5 per level, the U),
    other nodes in rows above them (centred on 0 when the graph has no stages)."""
    stages = any("depth" in d for _, d in g.nodes(data=True))
    plain = sorted(n for n in gen if "depth" not in g.nodes[n])
    y = {n: (1 + j if stages else j - (len(plain) - 1) / 2) for j, n in enumerate(plain)}
    seen: dict[float, int] = {}
    for n in sorted(n for n in gen if "depth" in g.nodes[n]):
        base = -1.5 * g.nodes[n]["depth"]
        y[n] = base - 0.75 * seen.get(base, 0)   # two stages at one level: stack them
        seen[base] = seen.get(base, 0) + 1
    return y


def layout(g: Any, labels: dict[str, str]) -> tuple[dict[str, tuple[float, float]],
                                                     dict[str, bool]]:
    """Pixel positions of every node and whether its label sits above it."""
    import networkx as nx

    pos: dict[str, tuple[float, float]] = {}
    above: dict[str, bool] = {}
    placed: list[tuple[str, Box]] = []   # (owner, box) of every marker and label so far
    x = 0.0
    for k, gen in enumerate(nx.topological_generations(g)):
        ys = {n: v * ROW_PX for n, v in rows(g, gen).items()}
        x = x + MIN_STEP_PX if k else 0.0
        while _clash(ys, x, k % 2 == 0, labels, placed):
            x += 2.0
        for n, y in ys.items():
            pos[n], above[n] = (x, y), k % 2 == 0
            placed += [(n, marker_box(x, y)), (n, label_box(x, y, labels[n], above[n]))]
    return pos, above


def _clash(ys: dict[str, float], x: float, up: bool, labels: dict[str, str],
           placed: list[tuple[str, Box]]) -> bool:
    mine = [(n, b) for n, y in ys.items()
            for b in (marker_box(x, y), label_box(x, y, labels[n], up))]
    return any(overlap(a, b) for _, a in mine for _, b in placed)


def extent(pos: dict[str, tuple[float, float]], above: dict[str, bool],
           labels: dict[str, str], pad: float = 6.0) -> tuple[list[float], list[float]]:
    """The x and y ranges (pixels) that hold every marker and label, with ``pad`` around."""
    boxes = [b for n, (x, y) in pos.items()
             for b in (marker_box(x, y), label_box(x, y, labels[n], above[n]))]
    return ([min(b[0] for b in boxes) - pad, max(b[2] for b in boxes) + pad],
            [min(b[1] for b in boxes) - pad, max(b[3] for b in boxes) + pad])
