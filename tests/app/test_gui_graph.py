"""The spec graph's labels: no label box covers another label or another node's marker,
checked on the figure alone (positions, text, font and marker sizes, axis ranges) with an
independent estimate of the text's size."""
from __future__ import annotations

import itertools

import pytest

from archspec import load_spec
from archspec.graph import spec_graph
from tests.conftest import SPECS

GLYPH_EM = 0.6   # average width of a sans-serif glyph, in font sizes
EDITOR_PLOT_PX = 330   # the editor's graph panel at a 1000 px window, less margins
TEXT_PAD = 2     # plotly leaves a little air between a marker and its text


def _boxes(fig, sx: float, sy: float) -> list[tuple[str, str, tuple]]:
    """(node, kind, pixel box) of every node marker and label when one axis unit is
    ``sx`` (``sy``) pixels."""
    out = []
    for t in fig.data:
        if t.mode != "markers+text":
            continue
        font, r = t.textfont.size, t.marker.size / 2
        for x, y, text, where in zip(t.x, t.y, t.text, t.textposition):
            px, py = x * sx, y * sy
            w, h = GLYPH_EM * font * len(text), 1.2 * font
            y0 = py + r + TEXT_PAD if where.startswith("top") else py - r - TEXT_PAD - h
            out.append((text, "marker", (px - r, py - r, px + r, py + r)))
            out.append((text, "label", (px - w / 2, y0, px + w / 2, y0 + h)))
    return out


def _hit(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("spec", ["spectral_unet_8.yaml", "tiny_unet_8.yaml"])
@pytest.mark.parametrize("expand", [True, False])
def test_graph_labels_never_cover_labels_or_markers(spec, expand):
    from app.gui.figures import graph_figure

    fig = graph_figure(spec_graph(load_spec(SPECS / spec), expand_unet=expand))
    xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
    m = fig.layout.margin
    plot_h = fig.layout.height - m.t - m.b
    assert xr[1] - xr[0] <= EDITOR_PLOT_PX   # fits the editor at its natural size
    assert plot_h >= yr[1] - yr[0]           # so one axis unit is at least one pixel
    nodes = {n for n, _, _ in _boxes(fig, 1, 1)}
    assert len(nodes) == len(spec_graph(load_spec(SPECS / spec), expand_unet=expand))
    for sx, sy in ((1.0, 1.0), ((EDITOR_PLOT_PX) / (xr[1] - xr[0]), plot_h / (yr[1] - yr[0])),
                   (2.0, 1.5)):
        boxes = _boxes(fig, sx, sy)
        for (na, ka, a), (nb, kb, b) in itertools.combinations(boxes, 2):
            if na != nb and "label" in (ka, kb):
                assert not _hit(a, b), f"{na} {ka} overlaps {nb} {kb} at scale {sx:.2f}"
    for n, _k, b in _boxes(fig, 1, 1):   # nothing is cut off by the axis ranges
        assert xr[0] <= b[0] and b[2] <= xr[1] and yr[0] <= b[1] and b[3] <= yr[1], n
