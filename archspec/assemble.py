"""Assembly of a validated spec into an ``nn.Module`` that runs the graph in order."""
from __future__ import annotations

import torch
from torch import nn

from archspec.spec import Spec


class GraphModel(nn.Module):
    """Runs a spec's node graph in topological order: ``model(x_t, t) -> prediction``.

    The per-call work is one Python loop over a precomputed plan of (slot, module, input
    slots), so overhead per node is a list index and a call.

    Args:
        order: node ids in topological order.
        node_modules: node id -> module (io nodes have none).
        node_inputs: node id -> ids of the nodes it reads.
        node_families: node id -> block family, for logging and hooks.
        input_id: id of the ``input`` node; time_id: id of the ``timestep`` node or None.
        output_id: id of the node whose value is returned.
    """

    def __init__(self, *, order: list[str], node_modules: dict[str, nn.Module],
                 node_inputs: dict[str, list[str]], node_families: dict[str, str],
                 input_id: str, time_id: str | None, output_id: str) -> None:
        super().__init__()
        self.node_modules = nn.ModuleDict(node_modules)
        self.node_families = dict(node_families)
        self.order = list(order)
        slot = {nid: i for i, nid in enumerate(order)}
        self._n = len(order)
        self._x, self._out = slot[input_id], slot[output_id]
        self._t = slot[time_id] if time_id is not None else None
        self._plan = [(slot[n], n, tuple(slot[s] for s in node_inputs[n]))
                      for n in order if n in node_modules]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W) float, t: (B,) or scalar timestep
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        vals: list = [None] * self._n
        vals[self._x] = x
        if self._t is not None:
            vals[self._t] = t
        mods = self.node_modules
        for s, name, srcs in self._plan:
            vals[s] = mods[name](*[vals[i] for i in srcs])
        return vals[self._out]  # (B, C, H, W) prediction in pixel space


def build_model(spec: Spec) -> GraphModel:
    """Build the validated spec's model on the current default device."""
    import blocks
    from archspec.validate import ensure_validated

    v = ensure_validated(spec).validated
    nodes, shapes, params, order = spec.model.nodes, v.shapes, v.params, list(v.order)
    mods, fams = {}, {}
    input_id, time_id = None, None
    for nid in order:  # build order: topological, ties by node id (equal hash, equal weights)
        node = nodes[nid]
        entry = blocks.get(node.block)
        fams[nid] = entry.family
        if node.block == "input":
            input_id = nid
        elif node.block == "timestep":
            time_id = nid
        else:
            mods[nid] = entry.builder(params[nid], [shapes[s] for s in node.in_])
    return GraphModel(order=order, node_modules=mods,
                      node_inputs={n: list(nodes[n].in_) for n in order},
                      node_families=fams, input_id=input_id, time_id=time_id,
                      output_id=spec.model.output)
