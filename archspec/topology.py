"""Validation layer 3, the graph: node ids, inputs, one image input, no cycles, and
everything feeding the output (see :mod:`archspec.validate` for the layers).

Every algorithm here is linear in the edges (plus a sort), so a hostile 1 MB spec is
refused in bounded time.
"""
from __future__ import annotations

import re

import networkx as nx

from archspec.errors import Problem
from archspec.loading import short, short_id
from archspec.messages import MEANT
from archspec.spec import MAX_ID, NodeSpec, Spec
from blocks.registry import RegistryError, suggest

_NODE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_CYCLES = 5                     # cycles reported; finding each is linear in the edges


def check_graph(spec: Spec) -> tuple[list[str] | None, list[Problem]]:
    """Inputs exist, no cycles, one image input, everything feeds the output.

    Returns (node ids in build order, problems); the order is None when the graph is
    broken. Build order is topological with ties broken by node id, never by declaration
    order: specs that differ only in the order nodes are written have the same hash and
    must build the same modules from the same random stream.
    """
    nodes, out = spec.model.nodes, spec.model.output
    g, problems = nx.DiGraph(), _id_problems(nodes)
    g.add_nodes_from(nodes)
    names = [n for n in nodes if len(n) <= MAX_ID][:1000]
    miskeyed = False
    for nid, node in nodes.items():
        miskeyed |= _miskeyed_in(node)
        problems += _edges(g, nid, node, nodes, names, len(problems))
    problems += _io_problems(nodes, out, names)
    problems += _cycles(g)
    if problems or miskeyed:  # a node's inputs written under another key: nothing reaches
        return None, problems  # it, so what is unused cannot be told yet
    problems = _reach_problems(g, nodes, out)
    if problems:
        return None, problems
    return list(nx.lexicographical_topological_sort(g)), []


def _id_problems(nodes: dict[str, NodeSpec]) -> list[Problem]:
    out = []
    for nid in nodes:
        if len(nid) > MAX_ID:
            out.append(Problem(f"model.nodes.{short_id(nid)}", f"node id is {len(nid)} "
                               f"characters long; the limit is {MAX_ID}"))
        elif not _NODE_ID.fullmatch(nid):
            out.append(Problem(f"model.nodes.{short_id(nid)}", "node ids are identifiers"
                               " of letters, digits and '_', not starting with a digit "
                               f"(at most {MAX_ID} characters); got {short(nid)}"))
    return out


def _miskeyed_in(node: NodeSpec) -> bool:
    """The node wrote its inputs under another key (``inputs:``), which the block layer
    reports with a hint; unless its block really has a parameter of that name."""
    import blocks

    try:
        fields = blocks.get(node.block).params.model_fields
    except RegistryError:
        fields = {}
    return not node.in_ and any(MEANT.get(k) == "in" and k not in fields
                                for k in node.params)


def _edges(g: "nx.DiGraph", nid: str, node: NodeSpec, nodes: dict[str, NodeSpec],
           names: list[str], found: int) -> list[Problem]:
    """Add the node's input edges to ``g``; problems with its inputs (``found``: how many
    problems there are already, so close matches stay bounded)."""
    import blocks

    loc, out = f"model.nodes.{short_id(nid)}", []
    try:
        lo, hi = blocks.get(node.block).input_range()
    except RegistryError:
        lo, hi = 0, None  # reported by the block layer
    n = len(node.in_)
    if (n < lo or (hi is not None and n > hi)) and not _miskeyed_in(node):
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any number'}"
        out.append(Problem(f"{loc}.in", f"block {node.block!r} takes {want} inputs, got {n}"))
    for i, src in enumerate(node.in_):
        if src not in nodes:
            # close matches cost a string comparison per node: only for the first few
            hint = suggest(src[:100], names) if found + len(out) < 20 else ""
            out.append(Problem(f"{loc}.in[{i}]", f"unknown node {short(src)}{hint}"))
        elif src == nid:
            out.append(Problem(f"{loc}.in[{i}]", "a node cannot read itself"))
        else:
            g.add_edge(src, nid)
    return out


def _io_problems(nodes: dict[str, NodeSpec], out: str, names: list[str]) -> list[Problem]:
    """One image input, at most one timestep, and an output that is a computed node."""
    problems = []
    inputs = [n for n, node in nodes.items() if node.block == "input"]
    if len(inputs) != 1:
        shown = ", ".join(short_id(n) for n in inputs[:5])
        problems.append(Problem("model.nodes", f"expected exactly one 'input' node, "
                                f"found {len(inputs)}{': ' + shown if inputs else ''}"))
    if sum(node.block == "timestep" for node in nodes.values()) > 1:
        problems.append(Problem("model.nodes", "more than one 'timestep' node"))
    if out not in nodes:
        problems.append(Problem("model.output", f"unknown node {short(out)}"
                                f"{suggest(out[:100], names)}"))
    elif nodes[out].block == "input":
        problems.append(Problem("model.output", f"{short(out)} is the input node: the model "
                                "would return its input unchanged and has no trainable "
                                "parameters; set model.output to the node that makes the "
                                "prediction"))
    return problems


def _reach_problems(g: "nx.DiGraph", nodes: dict[str, NodeSpec], out: str) -> list[Problem]:
    """Every node feeds the output, and the output depends on the input image."""
    problems = []
    used = nx.ancestors(g, out) | {out}
    unused = [nid for nid in nodes if nid not in used]
    for nid in unused[:20]:
        problems.append(Problem(f"model.nodes.{short_id(nid)}",
                                f"unused: its value never reaches the output {short(out)}"))
    if len(unused) > 20:
        problems.append(Problem("model.nodes", f"... and {len(unused) - 20} more unused nodes"))
    inputs = [n for n, node in nodes.items() if node.block == "input"]
    if inputs and inputs[0] not in used:
        problems.append(Problem("model.output", f"{short(out)} does not depend on the input "
                                "image"))
    return problems


def _cycles(g: "nx.DiGraph") -> list[Problem]:
    """One cycle from each of the first MAX_CYCLES cyclic components.

    Enumerating every simple cycle (``nx.simple_cycles``) is exponential on a dense graph:
    a 1 KB spec would run for minutes. Components are found in linear time, and one cycle
    per component by a walk that stops at the first repeated node.
    """
    out = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) < 2:
            continue
        cycle = _one_cycle(g, comp)
        shown = [short_id(n, 24) for n in cycle[:8]]
        more = " -> ..." if len(cycle) > 8 else ""
        out.append(Problem(f"model.nodes.{short_id(cycle[0])}", "cycle: "
                           + " -> ".join([*shown, shown[0]]) + more))
        if len(out) == MAX_CYCLES:
            break
    return out


def _one_cycle(g: "nx.DiGraph", comp: set) -> list[str]:
    """A cycle inside a strongly connected component: follow in-component successors
    from the smallest node until one repeats (every node has one, so this ends)."""
    start = min(comp)
    path, seen, node = [], {}, start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(s for s in g.successors(node) if s in comp)
    return path[seen[node]:]
