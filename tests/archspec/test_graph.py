"""archspec.graph: the spec as a networkx graph, unet composites expandable."""
from __future__ import annotations

import networkx as nx
import pytest

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
    assert g.nodes["eps.enc0.0"]["stage_block"] == "complex_resblock"
    assert g.nodes["eps.enc0.0"]["block_params"]["channels"] == p.channels  # the unet's fill


def test_unet_stage_parameter_counts_add_up_and_sit_where_the_weights_are():
    """Each stage node counts its own weights (the app's tooltips): the counts add up to
    the unet's, which validation counted on the real model; stages with weights count
    > 0; the default head is GroupNorm (2C) + conv3x3 (9 C C_out + C_out), by hand."""
    spec = load_spec(SPECS / "hybrid_unet_8.yaml")
    p = spec.validated.params["eps"]
    g = spec_graph(spec, expand_unet=True)
    counts = {n.split(".", 1)[1]: g.nodes[n]["params"] for n in g if n.startswith("eps.")}
    assert sum(counts.values()) == spec.validated.param_counts["eps"] > 0
    assert counts["stem"] == 0 and counts["down0"] == 0  # converter; spectral pooling
    weighted = [k for k in counts if k.startswith(("enc", "mid", "dec"))] + ["up1", "head"]
    assert all(counts[k] > 0 for k in weighted), counts  # up1: the spatial upsample's conv
    c, c_out = p.channels * p.channel_mult[0], spec.image.channels
    assert p.head is None and counts["head"] == 2 * c + 9 * c * c_out + c_out


@pytest.mark.parametrize("name,domains", [("tiny_unet_8", ["real"]),
                                          ("spectral_unet_8", ["complex"]),
                                          ("dual_unet_8", ["dual"]),
                                          ("hybrid_unet_8", ["complex", "real"])])
def test_unet_node_carries_its_stage_domains(name, domains):
    """The collapsed unet node outputs real pixels either way; ``domains`` says where its
    stages compute, and agrees with the expanded stages."""
    spec = load_spec(SPECS / f"{name}.yaml")
    node = spec_graph(spec).nodes["eps"]
    assert node["domain"] == "real" and node["domains"] == domains
    g = spec_graph(spec, expand_unet=True)
    inner = {g.nodes[n]["domain"] for n in g if n.startswith("eps.enc")
             or n.startswith("eps.dec") or n.startswith("eps.mid")}
    assert sorted(inner) == domains


def test_unet_node_knows_its_stages_domains():
    from archspec import load_spec
    from archspec.graph import spec_graph
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
