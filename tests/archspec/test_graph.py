"""archspec.graph: the spec as a networkx graph, unet composites expandable."""
from __future__ import annotations

import networkx as nx

from archspec import load_spec
from archspec.graph import spec_graph
from tests.conftest import SPECS


def test_graph_mirrors_the_spec():
    spec = load_spec(SPECS / "tiny_unet_8_graph.yaml")
    g = spec_graph(spec)
    assert set(g) == set(spec.model.nodes)
    edges = {(s, n) for n, node in spec.model.nodes.items() for s in node.in_}
    assert set(g.edges) == edges
    for n in g:
        assert g.nodes[n]["block"] == spec.model.nodes[n].block
        assert g.nodes[n]["params"] == spec.validated.param_counts.get(n, 0)
    out = spec.model.output
    assert g.nodes[out]["output"] and g.nodes[out]["shape"] == (1, 8, 8)
    for a, b, d in g.edges(data=True):
        assert d["shape"] == g.nodes[a]["shape"] and d["domain"] == g.nodes[a]["domain"]


def test_unet_expands_into_stages_with_skips():
    spec = load_spec(SPECS / "hybrid_unet_8.yaml")
    p = spec.validated.params["eps"]
    g = spec_graph(spec, expand_unet=True)
    assert "eps" not in g and nx.is_directed_acyclic_graph(g)
    stages = [n for n in g if n.startswith("eps.")]
    levels, bpl = len(p.channel_mult), p.blocks_per_level
    # stem + encoder + downs + 2 middle + decoder + ups + head
    assert len(stages) == 1 + levels * bpl + (levels - 1) + 2 + levels * bpl + (levels - 1) + 1
    skips = [(a, b) for a, b, d in g.edges(data=True) if d.get("skip")]
    assert len(skips) == levels * bpl
    assert all(a.split(".")[1].startswith("enc") and b.split(".")[1].startswith("dec")
               for a, b in skips)
    assert g.nodes["eps.enc0.0"]["domain"] == "complex"      # complex encoder
    assert g.nodes["eps.dec0.0"]["domain"] == "real"         # spatial decoder
    assert g.nodes["eps.enc1.0"]["shape"] == (2 * p.channels, 4, 4)
    assert g.has_edge("x", "eps.stem") and g.has_edge("temb", "eps.mid0")
    assert g.nodes["eps.head"]["params"] == spec.validated.param_counts["eps"]


def test_unet_node_knows_its_stages_domains():
    from archspec import load_spec
    from archspec.graph import spec_graph, unet_stages
    from tests.conftest import SPECS

    for name, want in (("tiny_unet_8", ("real", "real")),
                       ("spectral_unet_8", ("complex", "complex")),
                       ("hybrid_unet_8", ("complex", "real"))):
        spec = load_spec(SPECS / f"{name}.yaml")
        g = spec_graph(spec)
        (nid,) = [n for n in g if g.nodes[n]["block"] == "unet"]
        sd = g.nodes[nid]["stage_domains"]
        assert (sd["encoder"], sd["decoder"]) == want, name
        # the same as the expanded graph's own stages say
        ex = spec_graph(spec, expand_unet=True)
        assert ex.nodes[f"{nid}.enc0.0"]["domain"] == want[0]
        assert ex.nodes[f"{nid}.dec0.0"]["domain"] == want[1]
        assert unet_stages  # the helper stays public
