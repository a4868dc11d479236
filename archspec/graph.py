"""A validated spec as a networkx graph (for drawing, diffing, analysis).

Nodes carry ``block``, ``family``, ``domain`` (of the node's output), ``shape`` and
``params`` (parameter count; a unet composite also ``stage_domains``: the domain its
encoder and decoder stages compute in); edges carry the ``domain`` and ``shape`` of the tensor they
move. With ``expand_unet=True`` every ``unet`` composite is replaced by its stages
(stem, encoder levels, middle, decoder levels, head) with the skip connections, as
:func:`blocks.unet.build_unet` lays them out; stage shapes are (channels, H, W) of the
implied spatial grid.
"""
from __future__ import annotations

from typing import Any

import networkx as nx


def spec_graph(spec: Any, expand_unet: bool = False) -> nx.DiGraph:
    """The spec's node graph with domains and shapes (validates the spec if needed)."""
    import blocks
    from archspec import ensure_validated

    v = ensure_validated(spec).validated
    g = nx.DiGraph(name=spec.name)
    for nid in v.order:
        node = spec.model.nodes[nid]
        shp = v.shapes.get(nid)
        g.add_node(nid, block=node.block, family=blocks.get(node.block).family,
                   domain=v.domains.get(nid), shape=tuple(shp.shape) if shp else None,
                   params=int(v.param_counts.get(nid, 0)), output=nid == spec.model.output)
    for nid in v.order:
        for i, src in enumerate(spec.model.nodes[nid].in_):
            g.add_edge(src, nid, domain=g.nodes[src]["domain"], shape=g.nodes[src]["shape"],
                       slot=i)
    img = (spec.image.channels, spec.image.size, spec.image.size)
    for nid in [n for n in g if g.nodes[n]["block"] == "unet"]:
        # what the composite computes in, stage by stage (its output is always real)
        stages = unet_stages(v.params[nid], img)[0][1:-1]
        g.nodes[nid]["stage_domains"] = {
            "encoder": stages[0]["domain"],
            "decoder": next(s["domain"] for s in stages if s["id"].startswith("dec"))}
    if expand_unet:
        for nid in [n for n in g if g.nodes[n]["block"] == "unet"]:
            _expand(g, nid, v.params[nid], spec)
    return g


def unet_stages(p: Any, image: tuple[int, int, int]) -> tuple[list[dict], list[tuple]]:
    """(stages in run order, skip edges) of a unet with params ``p`` on ``image``.

    Each stage is ``{"id", "label", "domain", "shape", "depth"}`` (depth: the level, so
    drawings can make the U); skip edges are (encoder stage id,
    decoder stage id) pairs, in the order the decoder pops them.
    """
    import blocks
    from blocks.unet import RESAMPLE, _decoder, _stage_domain

    c_in, h, w = image
    e, d = p.encoder, _decoder(p)
    enc, dec = _stage_domain(blocks.get(e.block)), _stage_domain(blocks.get(d.block))

    def label(half: Any, with_att: bool) -> str:
        return half.block + (f" + {half.attention.block}" if with_att and half.attention
                             else "")

    down = e.resample.block if e.resample else RESAMPLE[enc][0]
    up = d.resample.block if d.resample else RESAMPLE[dec][1]
    widths = [p.channels * m for m in p.channel_mult]
    levels = len(widths)
    stages: list[dict] = [{"id": "stem", "label": f"to {enc}", "domain": enc,
                           "shape": (c_in, h, w), "depth": 0}]
    skips, pairs = [], []
    for lvl in range(levels):
        size = (h // 2 ** lvl, w // 2 ** lvl)
        for i in range(p.blocks_per_level):
            sid = f"enc{lvl}.{i}"
            stages.append({"id": sid, "label": label(e, lvl in p.attention_levels),
                           "domain": enc,
                           "shape": (widths[lvl], *size), "depth": lvl})
            skips.append(sid)
        if lvl < levels - 1:
            stages.append({"id": f"down{lvl}", "label": down, "domain": enc,
                           "shape": (widths[lvl], size[0] // 2, size[1] // 2),
                           "depth": lvl + 0.5})
    bottom = (h // 2 ** (levels - 1), w // 2 ** (levels - 1))
    for i in range(2):
        stages.append({"id": f"mid{i}", "label": label(e, i == 0 and p.mid_attention),
                       "domain": enc,
                       "shape": (widths[-1], *bottom), "depth": levels})
    for lvl in reversed(range(levels)):
        size = (h // 2 ** lvl, w // 2 ** lvl)
        for i in range(p.blocks_per_level):
            sid = f"dec{lvl}.{i}"
            stages.append({"id": sid, "label": label(d, lvl in p.attention_levels),
                           "domain": dec, "shape": (widths[lvl], *size), "depth": lvl})
            pairs.append((skips.pop(), sid))
        if lvl > 0:
            stages.append({"id": f"up{lvl}", "label": up, "domain": dec,
                           "shape": (widths[lvl], size[0] * 2, size[1] * 2),
                           "depth": lvl - 0.5})
    stages.append({"id": "head", "label": p.head.block if p.head else "GroupNorm-SiLU-conv",
                   "domain": "real",
                   "shape": (p.out_channels or c_in, h, w), "depth": 0})
    return stages, pairs


def _expand(g: nx.DiGraph, nid: str, params: Any, spec: Any) -> None:
    img = (spec.image.channels, spec.image.size, spec.image.size)
    preds = list(g.in_edges(nid, data=True))
    succs = list(g.out_edges(nid, data=True))
    stages, skips = unet_stages(params, img)
    ids = [f"{nid}.{s['id']}" for s in stages]
    for s, sid in zip(stages, ids):
        g.add_node(sid, block=s["label"], family="unet stage", domain=s["domain"],
                   shape=s["shape"], params=0, output=False, parent=nid, depth=s["depth"])
    for a, b in zip(ids, ids[1:]):
        g.add_edge(a, b, domain=g.nodes[a]["domain"], shape=g.nodes[a]["shape"], slot=0)
    for a, b in skips:
        a, b = f"{nid}.{a}", f"{nid}.{b}"
        g.add_edge(a, b, domain=g.nodes[a]["domain"], shape=g.nodes[a]["shape"], slot=1,
                   skip=True)
    for src, _, d in preds:  # the image feeds the stem, the embedding every stage
        targets = [ids[0]] if d.get("slot") == 0 else [i for i in ids[1:-1]
                                                        if ".down" not in i and ".up" not in i]
        for t in targets:
            g.add_edge(src, t, **d)
    head = ids[-1]
    g.nodes[head]["output"] = g.nodes[nid].get("output", False)
    g.nodes[head]["params"] = g.nodes[nid]["params"]  # the composite's total, shown once
    for _, dst, d in succs:
        g.add_edge(head, dst, **d)
    g.remove_node(nid)
