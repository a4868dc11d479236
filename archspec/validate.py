"""Validation in layers: schema, block parameters, graph, domains, shapes and memory.

Each layer collects every problem it finds; a later layer runs only on what the earlier
ones accepted, so one root cause is reported once, where it is.
"""
from __future__ import annotations

import os
import re
import typing
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from archspec.errors import Problem, SpecError
from archspec.spec import NodeSpec, Spec
from blocks.registry import RegistryError, suggest

DEFAULT_MEMORY_BUDGET_GB = 16.0   # estimated training memory a spec may ask for
SHAPE_BATCH = 2                    # batch used for meta-device shape inference
_NODE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


# --------------------------------------------------------------------------- pydantic errors
def _fmt_loc(prefix: str, loc: tuple) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names of the pydantic model found by following ``loc`` from ``model``."""
    ann: Any = model
    for key in loc:
        origin = typing.get_origin(ann)
        if origin in (dict, list):
            ann = typing.get_args(ann)[-1]
            continue
        if isinstance(ann, type) and issubclass(ann, BaseModel) and key in ann.model_fields:
            ann = ann.model_fields[key].annotation
        else:
            return []
    while typing.get_origin(ann) in (dict, list):
        ann = typing.get_args(ann)[-1]
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


def _fmt_error(err: dict, model: type[BaseModel], prefix: str) -> Problem:
    loc = tuple(err["loc"])
    kind, ctx = err["type"], err.get("ctx") or {}
    got = err.get("input")
    shown = repr(got) if len(repr(got)) <= 40 else repr(got)[:37] + "..."
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1])
        msg = f"unknown key{suggest(str(loc[-1]), fields)}; allowed: {', '.join(fields)}"
    elif kind == "missing":
        msg = "required"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        msg = f"expected {op} {bound}, got {shown}"
    elif kind == "literal_error":
        msg = f"expected {ctx.get('expected')}, got {shown}"
    else:
        msg = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {shown}"
    return Problem(_fmt_loc(prefix, loc), msg)


def pydantic_problems(e: ValidationError, model: type[BaseModel], prefix: str = "") -> list:
    return [_fmt_error(err, model, prefix) for err in e.errors()]


# --------------------------------------------------------------------------- layer 1: schema
def check_schema(data: dict[str, Any]) -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(pydantic_problems(e, Spec)) from None


# --------------------------------------------------------------------------- layer 2: blocks
def check_blocks(spec: Spec) -> dict[str, BaseModel]:
    """Validate every node's block name and parameters; returns node id -> params."""
    import blocks

    params, problems = {}, []
    for nid, node in spec.model.nodes.items():
        loc = f"model.nodes.{nid}"
        try:
            entry = blocks.get(node.block)
        except RegistryError as e:
            problems.append(Problem(f"{loc}.block", str(e)))
            continue
        try:
            params[nid] = entry.params(**node.params)
        except ValidationError as e:
            problems.extend(pydantic_problems(e, entry.params, loc))
    problems += _check_registries(spec)
    if problems:
        raise SpecError(problems)
    return params


def _check_registries(spec: Spec) -> list[Problem]:
    """Dataset and sampler names (and what the samplers support), and loss consistency."""
    out = []
    loss = spec.diffusion.loss
    if loss.freq_weighting != "uniform" and loss.domain != "fourier":
        out.append(Problem("diffusion.loss.freq_weighting", f"{loss.freq_weighting!r} weights "
                           "frequencies, so it needs diffusion.loss.domain: fourier"))
    try:
        from evaluator.datasets import DATASETS
        if spec.train.dataset not in DATASETS:
            out.append(Problem("train.dataset", str(_unknown(DATASETS, spec.train.dataset))))
    except ImportError:
        pass
    try:
        from evaluator.samplers import SAMPLERS
    except ImportError:
        return out
    pred = {"epsilon": "epsilon", "x0": "x0", "v": "v"}[spec.diffusion.prediction]
    for i, s in enumerate(spec.evaluate.samplers):
        loc = f"evaluate.samplers[{i}].name"
        if s.name not in SAMPLERS:
            out.append(Problem(loc, str(_unknown(SAMPLERS, s.name))))
            continue
        extra = SAMPLERS.get(s.name).extra
        if spec.evaluate.clip not in extra.get("clip", (spec.evaluate.clip,)):
            out.append(Problem(loc, f"sampler {s.name!r} cannot apply clip policy "
                               f"{spec.evaluate.clip!r} (it supports "
                               f"{', '.join(extra['clip'])}); samplers compared must share one"))
        if pred not in extra.get("predictions", (pred,)):
            out.append(Problem(loc, f"sampler {s.name!r} does not support prediction "
                               f"{pred!r}"))
    return out


def _unknown(registry, name: str) -> RegistryError:
    try:
        registry.get(name)
    except RegistryError as e:
        return e
    return RegistryError(name)


# --------------------------------------------------------------------------- layer 3: graph
def check_graph(spec: Spec) -> list[str]:
    """Inputs exist, no cycles, one image input, everything feeds the output.

    Returns the node ids in topological order.
    """
    import blocks

    nodes, out = spec.model.nodes, spec.model.output
    g, problems = nx.DiGraph(), []
    g.add_nodes_from(nodes)
    for nid in nodes:
        if not _NODE_ID.fullmatch(nid):
            problems.append(Problem(f"model.nodes.{nid}", "node ids are identifiers: letters, "
                                    "digits and '_', not starting with a digit"))
    for nid, node in nodes.items():
        lo, hi = blocks.get(node.block).input_range()
        n = len(node.in_)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any number'}"
            problems.append(Problem(f"model.nodes.{nid}.in",
                                    f"block {node.block!r} takes {want} inputs, got {n}"))
        for i, src in enumerate(node.in_):
            if src not in nodes:
                problems.append(Problem(f"model.nodes.{nid}.in[{i}]", f"unknown node {src!r}"
                                        f"{suggest(src, list(nodes))}"))
            else:
                g.add_edge(src, nid)
    inputs = [n for n, node in nodes.items() if node.block == "input"]
    if len(inputs) != 1:
        problems.append(Problem("model.nodes", f"expected exactly one 'input' node, "
                                f"found {len(inputs)}{': ' + ', '.join(inputs) if inputs else ''}"))
    if sum(node.block == "timestep" for node in nodes.values()) > 1:
        problems.append(Problem("model.nodes", "more than one 'timestep' node"))
    if out not in nodes:
        problems.append(Problem("model.output", f"unknown node {out!r}{suggest(out, list(nodes))}"))
    for cycle in list(nx.simple_cycles(g))[:5]:
        problems.append(Problem(f"model.nodes.{cycle[0]}",
                                "cycle: " + " -> ".join([*cycle, cycle[0]])))
    if problems:
        raise SpecError(problems)
    used = nx.ancestors(g, out) | {out}
    for nid in nodes:
        if nid not in used:
            problems.append(Problem(f"model.nodes.{nid}",
                                    f"unused: its value never reaches the output {out!r}"))
    if inputs and inputs[0] not in used:
        problems.append(Problem("model.output", f"{out!r} does not depend on the input image"))
    if problems:
        raise SpecError(problems)
    index = {n: i for i, n in enumerate(nodes)}  # keep declared order where the graph allows
    return list(nx.lexicographical_topological_sort(g, key=index.__getitem__))


# --------------------------------------------------------------------------- layer 4: domains
def check_domains(spec: Spec, order: list[str]) -> dict[str, str]:
    """Each edge carries the domain its consumer takes; returns node id -> output domain."""
    import blocks

    nodes, dom, problems = spec.model.nodes, {}, []
    for nid in order:
        node = nodes[nid]
        entry = blocks.get(node.block)
        ok = True
        for i, src in enumerate(node.in_):
            want, have = entry.domain_at(i), dom.get(src)
            if have is None:
                ok = False
            elif want != "any" and want != have:
                ok = False
                problems.append(Problem(
                    f"model.nodes.{nid}.in[{i}]",
                    f"block {node.block!r} takes {want} here, but {src!r} gives {have}"
                    f"{blocks.adapter_hint(have, want)}" + (" between them"
                                                            if blocks.adapter_hint(have, want) else "")))
        if ok:
            dom[nid] = entry.output_domain([dom[s] for s in node.in_])
    out = spec.model.output
    if out in dom and dom[out] != "real":
        problems.append(Problem("model.output", f"{out!r} gives {dom[out]}, the model must "
                                f"return pixel space (real){blocks.adapter_hint(dom[out], 'real')}"))
    if problems:
        raise SpecError(problems)
    return dom


# --------------------------------------------------------------------------- layer 5: shapes
# Small specs infer shapes with real CPU tensors: the same shapes, but torch's meta kernels
# are Python decompositions whose first use imports torch._dynamo and sympy (about 2 s),
# which would double `archsearch validate`. Anything larger than these bounds, or anything
# that could allocate much, takes the meta device and allocates nothing.
FAST_MAX_IMAGE = 64
FAST_MAX_WIDTH = 256       # largest integer parameter x largest integer in a list parameter
FAST_MAX_NODES = 256


def inference_device(spec: Spec, params: dict[str, BaseModel]) -> str:
    """``"cpu"`` for specs small enough to run at batch 2 for real, else ``"meta"``."""
    scalars, lists = [1], [1]
    for p in params.values():
        for v in p.model_dump().values():
            if isinstance(v, int) and not isinstance(v, bool):
                scalars.append(v)
            elif isinstance(v, list):
                lists += [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
    small = (spec.image.size <= FAST_MAX_IMAGE and len(spec.model.nodes) <= FAST_MAX_NODES
             and max(scalars) * max(lists) <= FAST_MAX_WIDTH)
    return "cpu" if small else "meta"


def probe_tensor(domain: str, shape: tuple[int, ...], batch: int, device: str):
    import torch

    dtype = torch.complex64 if domain == "complex" else torch.float32
    if device == "meta":
        return torch.empty((batch, *shape), dtype=dtype, device="meta")
    return torch.randn((batch, *shape), dtype=dtype, generator=torch.Generator().manual_seed(0))


def _spec_of(domain: str, t) -> "Any":
    import blocks

    return blocks.TensorSpec(domain, tuple(int(s) for s in t.shape[1:]))


def check_shapes(spec: Spec, order: list[str], domains: dict[str, str],
                 params: dict[str, BaseModel]) -> None:
    """Infer every node's output (meta device, or CPU at batch 2 when small: see
    :func:`inference_device`); then check the output shape and the memory budget."""
    import torch

    import blocks

    nodes, problems = spec.model.nodes, []
    values: dict[str, Any] = {}
    shapes, counts = {}, {}
    act_bytes = [0]

    def count(_mod, _inp, output):
        if isinstance(output, torch.Tensor):
            act_bytes[0] += output.numel() * output.element_size()

    img = (spec.image.channels, spec.image.size, spec.image.size)
    device = inference_device(spec, params)
    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        for nid in order:
            node = nodes[nid]
            if any(s not in values for s in node.in_):
                continue
            entry = blocks.get(node.block)
            ins = [values[s] for s in node.in_]
            try:
                if node.block == "input":
                    values[nid] = probe_tensor("real", img, SHAPE_BATCH, device)
                elif node.block == "timestep":
                    values[nid] = torch.full((SHAPE_BATCH,), 500.0, device=device)
                else:
                    in_specs = [_spec_of(domains[s], v) for s, v in zip(node.in_, ins)]
                    with torch.device(device), torch.no_grad():
                        mod = entry.builder(params[nid], in_specs)
                        counts[nid] = sum(p.numel() for p in mod.parameters())
                        values[nid] = mod(*ins)
            except Exception as e:  # a block's own error: report it at its node
                problems.append(Problem(f"model.nodes.{nid}",
                                        f"{node.block}: {_one_line(e)} (inputs "
                                        f"{[tuple(v.shape[1:]) for v in ins]})"))
                continue
            v = values[nid]
            problems += _check_value(nid, node, domains[nid], v)
            shapes[nid] = _spec_of(domains[nid], v)
    finally:
        hook.remove()
    out = spec.model.output
    if out in shapes and shapes[out].shape != img:
        problems.append(Problem("model.output", f"{out!r} gives shape {shapes[out].shape}, "
                                f"expected {img} to match image"))
    problems += _check_memory(spec, act_bytes[0] / SHAPE_BATCH, sum(counts.values()))
    if problems:
        raise SpecError(problems)
    spec._shapes, spec._param_counts = shapes, counts


def _check_value(nid: str, node: NodeSpec, domain: str, v) -> list[Problem]:
    import torch

    if not isinstance(v, torch.Tensor):
        return [Problem(f"model.nodes.{nid}", f"{node.block} returned {type(v).__name__}, "
                        "expected a tensor")]
    if (domain == "complex") != v.is_complex():
        return [Problem(f"model.nodes.{nid}", f"{node.block} declares {domain} output but "
                        f"returned {v.dtype}")]
    return []


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def memory_budget_bytes() -> float:
    gb = float(os.environ.get("ARCHSEARCH_MEMORY_BUDGET_GB", DEFAULT_MEMORY_BUDGET_GB))
    return gb * 2**30


def _check_memory(spec: Spec, act_per_sample: float, n_params: int) -> list[Problem]:
    """Activations kept for backward at the training batch, plus weights, grads, Adam."""
    need = act_per_sample * spec.train.batch_size + 16 * n_params
    budget = memory_budget_bytes()
    if need <= budget:
        return []
    return [Problem("model", f"estimated training memory {need / 2**30:.1f} GiB "
                    f"({n_params:,} parameters, batch {spec.train.batch_size}) exceeds the "
                    f"budget of {budget / 2**30:.1f} GiB (ARCHSEARCH_MEMORY_BUDGET_GB)")]
