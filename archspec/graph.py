"""A validated spec as a networkx graph (for drawing, diffing, analysis).

Nodes carry ``block``, ``family``, ``domain`` (of the node's output), ``shape`` and
``params`` (parameter count); a ``unet`` node also carries ``domains``, the domains its
stages compute in (``["complex"]`` for a spectral unet, ``["complex", "real"]`` for a
hybrid), so a drawing can tell them apart, and ``stage_domains``, ``{"encoder": ..., "decoder": ...}``. Edges carry the ``domain`` and ``shape`` of the
tensor they move. With ``expand_unet=True`` every ``unet`` composite is replaced by its
stages as the unet itself describes them (:meth:`blocks.unet.UNet.stages`): stem, encoder
levels, middle, decoder levels, head, with the skip connections; each stage node has its
own parameter count (they add up to the unet's), the stage block and its parameters, and
its shape, (channels, H, W) of the implied spatial grid.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict
from typing import Any

import networkx as nx


def spec_graph(spec: Any, expand_unet: bool = False) -> nx.DiGraph:
    """The spec's node graph with domains and shapes (validates the spec if needed)."""
    import blocks
    from archspec.validate import ensure_validated
    from blocks.unet import stage_domains

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
    for nid in [n for n in g if g.nodes[n]["block"] == "unet"]:
        enc, dec = stage_domains(v.params[nid])
        g.nodes[nid]["domains"] = sorted({enc, dec})
        g.nodes[nid]["stage_domains"] = {"encoder": enc, "decoder": dec}
        if expand_unet:
            _expand(g, nid, *unet_stages(v.params[nid], _image(spec), _emb_dim(spec, nid)))
    return g


def unet_stages(p: Any, image: tuple[int, int, int], emb_dim: int = 16
                ) -> tuple[list[dict], list[tuple[str, str]]]:
    """(stages in run order, skip edges) of a unet with params ``p`` on ``image``.

    Each stage is a dict of :class:`blocks.unet.StageInfo` (``id``, ``block``, ``params``,
    ``attention``, ``attention_params``, ``domain``, ``shape``, ``depth``, ``n_params``,
    ``label``); ``depth`` is the level, so drawings can make the U. Skip edges are
    (encoder stage id, decoder stage id) pairs, in the order the decoder takes them.
    ``emb_dim`` is the time embedding's width (it sizes the stages' embedding layers).
    """
    key = (json.dumps(p.model_dump(mode="json"), sort_keys=True), tuple(image), emb_dim)
    if key not in _STAGES:  # the app redraws one spec often; building costs ~0.1-1 s
        from blocks import TensorSpec
        from blocks.unet import describe_unet

        stages, skips = describe_unet(p, TensorSpec("real", tuple(image)),
                                      TensorSpec("embed", (emb_dim,)))
        _STAGES[key] = [asdict(s) for s in stages], skips
        while len(_STAGES) > 16:
            _STAGES.pop(next(iter(_STAGES)))
    stages, skips = _STAGES[key]
    return copy.deepcopy(stages), list(skips)


_STAGES: dict[tuple, tuple[list[dict], list[tuple[str, str]]]] = {}


def _image(spec: Any) -> tuple[int, int, int]:
    return spec.image.channels, spec.image.size, spec.image.size


def _emb_dim(spec: Any, nid: str) -> int:
    """Width of the embedding a unet node reads (its second input)."""
    src = spec.model.nodes[nid].in_[1]
    return int(spec.validated.shapes[src].shape[0])


def _expand(g: nx.DiGraph, nid: str, stages: list[dict], skips: list[tuple[str, str]]) -> None:
    preds = list(g.in_edges(nid, data=True))
    succs = list(g.out_edges(nid, data=True))
    ids = [f"{nid}.{s['id']}" for s in stages]
    for s, sid in zip(stages, ids):
        g.add_node(sid, block=s["label"], family="unet stage", domain=s["domain"],
                   shape=tuple(s["shape"]), params=s["n_params"], output=False, parent=nid,
                   depth=s["depth"], stage_block=s["block"], block_params=s["params"],
                   attention=s["attention"], attention_params=s["attention_params"])
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
    for _, dst, d in succs:
        g.add_edge(head, dst, **d)
    g.remove_node(nid)
