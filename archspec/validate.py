"""Validation in layers: schema, block parameters, graph, domains, shapes and memory.

Each layer collects every problem it finds. Layers that do not depend on each other report
together (a bad ``train`` section does not hide an unknown block in ``model``); a layer
that needs an earlier one's result runs only on what that layer accepted, so one root
cause is reported once, where it is. The graph layer lives in :mod:`archspec.topology`;
every graph algorithm is linear in the edges (plus a sort), so a hostile 1 MB spec is
refused in bounded time.
"""
from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ValidationError

from archspec.errors import Problem, SpecError
from archspec.loading import short, short_id
from archspec.messages import pydantic_problems
from archspec.spec import NodeSpec, Spec, ValidatedSpec
from archspec.topology import check_graph
from blocks.registry import RegistryError

DEFAULT_MEMORY_BUDGET_GB = 16.0   # estimated training memory a spec may ask for
SHAPE_BATCH = 2                    # batch used for meta-device shape inference


# --------------------------------------------------------------------------- the pipeline
_PLACEHOLDERS = {"name": "spec", "image": {"channels": 1, "size": 8},
                 "model": {"nodes": {"x": {"block": "input"}}, "output": "x"}}


def validate(data: dict[str, Any]) -> Spec:
    """Every layer on plain (upgraded, overridden, resolved) data; raises one
    :class:`SpecError` listing every problem of every layer that could run."""
    spec, bad, problems = check_schema(data)
    if spec is None:
        raise SpecError(problems)
    model_ok = "model" not in bad
    if model_ok:
        params, block_problems = check_blocks(spec)
        order, graph_problems = check_graph(spec)
        problems += block_problems + graph_problems
        domains: dict[str, str] = {}
        if order is not None:
            domains, dom_problems = check_domains(spec, order)
            problems += dom_problems
    if not bad & {"image", "train", "diffusion", "evaluate"}:
        problems += check_spec_rules(spec, params if model_ok else {})
        from archspec.checks import run_checks

        problems += run_checks(spec)
    if problems or not model_ok:
        raise SpecError(_unique(problems))
    shapes, counts = check_shapes(spec, order, domains, params)
    spec._validated = ValidatedSpec(tuple(order), params, domains, shapes, counts)
    return spec


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def ensure_layers(spec: Spec) -> Spec:
    """The model layers on a spec that passed the schema (built without :func:`validate`)."""
    params, problems = check_blocks(spec)
    order, graph_problems = check_graph(spec)
    problems += graph_problems
    domains: dict[str, str] = {}
    if order is not None:
        domains, dom_problems = check_domains(spec, order)
        problems += dom_problems
    if problems:
        raise SpecError(_unique(problems))
    shapes, counts = check_shapes(spec, order, domains, params)
    spec._validated = ValidatedSpec(tuple(order), params, domains, shapes, counts)
    return spec


# --------------------------------------------------------------------------- layer 1: schema
def check_schema(data: dict[str, Any]) -> tuple[Spec | None, set[str], list[Problem]]:
    """(spec, sections that failed, problems). When a section fails, the others are still
    checked: the failed ones are replaced by their defaults (or a placeholder) so later
    layers can look at the rest; ``bad`` says which results not to trust."""
    try:
        return Spec.model_validate(data), set(), []
    except ValidationError as e:
        problems = pydantic_problems(e, Spec)
        bad = {str(err["loc"][0]) for err in e.errors() if err["loc"]}
    patched = {k: v for k, v in data.items() if k not in bad}
    patched.update({k: v for k, v in _PLACEHOLDERS.items() if k in bad or k not in data})
    try:
        spec = Spec.model_validate(patched)
    except ValidationError:  # pragma: no cover - the placeholders are valid
        return None, bad, problems
    return spec, bad | {k for k in _PLACEHOLDERS if k not in data}, problems


# --------------------------------------------------------------------------- layer 2: blocks
def check_blocks(spec: Spec) -> tuple[dict[str, BaseModel], list[Problem]]:
    """Validate every node's block name and parameters; node id -> params, problems."""
    import blocks

    params, problems = {}, []
    for nid, node in spec.model.nodes.items():
        loc = f"model.nodes.{short_id(nid)}"
        try:
            entry = blocks.get(node.block)
        except RegistryError as e:
            problems.append(Problem(f"{loc}.block", _cut(str(e))))
            continue
        try:
            params[nid] = entry.params(**node.params)
        except ValidationError as e:
            problems.extend(pydantic_problems(e, entry.params, loc, keys=("block", "in")))
    return params, problems


def _cut(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_spec_rules(spec: Spec, params: dict[str, BaseModel]) -> list[Problem]:
    """Rules between sections: the loss's weighting and domain, heads' predictions."""
    out = []
    loss = spec.diffusion.loss
    if loss.freq_weighting != "uniform" and loss.domain != "fourier":
        out.append(Problem("diffusion.loss.freq_weighting", f"{loss.freq_weighting!r} weights "
                           "frequencies, so it needs diffusion.loss.domain: fourier"))
    pred = spec.diffusion.prediction
    for nid, p in params.items():
        said = getattr(p, "predicts", None)
        if said is not None and said != pred:
            out.append(Problem(f"model.nodes.{short_id(nid)}.predicts",
                               f"the head predicts {said!r} but diffusion.prediction is "
                               f"{pred!r}; make them agree"))
    return out


# --------------------------------------------------------------------------- layer 4: domains
def check_domains(spec: Spec, order: list[str]) -> tuple[dict[str, str], list[Problem]]:
    """Each edge carries the domain its consumer takes; (node id -> output domain,
    problems). Nodes with an unknown block (reported by the block layer) are skipped."""
    import blocks

    nodes, dom, problems = spec.model.nodes, {}, []
    for nid in order:
        node = nodes[nid]
        try:
            entry = blocks.get(node.block)
        except RegistryError:
            continue
        ok = True
        for i, src in enumerate(node.in_):
            want, have = entry.domain_at(i), dom.get(src)
            if have is None:
                ok = False
            elif want != "any" and want != have:
                ok = False
                problems.append(Problem(
                    f"model.nodes.{short_id(nid)}.in[{i}]",
                    f"block {node.block!r} takes {want} here, but {short(src)} gives {have}"
                    f"{blocks.adapter_hint(have, want)}" + (" between them"
                                                            if blocks.adapter_hint(have, want) else "")))
        if ok:
            dom[nid] = entry.output_domain([dom[s] for s in node.in_])
    out = spec.model.output
    if out in dom and dom[out] != "real":
        problems.append(Problem("model.output", f"{short(out)} gives {dom[out]}, the model "
                                f"must return pixel space (real)"
                                f"{blocks.adapter_hint(dom[out], 'real')}"))
    return dom, problems


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
                 params: dict[str, BaseModel]) -> tuple[dict[str, Any], dict[str, int]]:
    """Infer every node's output (meta device, or CPU at batch 2 when small: see
    :func:`inference_device`); then check the output shape and the memory budget.

    The result depends only on the image, the nodes, the output, the batch size and the
    memory budget, so it is remembered for the last few such inputs: re-validating a spec
    with other training or evaluation settings (``apply_budget``, overrides, sweeps)
    does not rebuild the model. Validation never draws from torch's global RNG.
    """
    import json

    import torch

    key = json.dumps([spec.image.model_dump(), {n: [spec.model.nodes[n].block,
                      spec.model.nodes[n].in_, params[n].model_dump(mode="json")] for n in order},
                      spec.model.output, spec.train.batch_size, memory_budget_bytes(),
                      FAST_MAX_IMAGE, FAST_MAX_WIDTH, FAST_MAX_NODES], sort_keys=True)
    if key in _SHAPE_CACHE:
        shapes, counts, problems = _SHAPE_CACHE[key]
    else:
        with torch.random.fork_rng(devices=[]):
            shapes, counts, problems = _infer_shapes(spec, order, domains, params)
        _SHAPE_CACHE[key] = shapes, counts, problems
        while len(_SHAPE_CACHE) > 64:
            _SHAPE_CACHE.pop(next(iter(_SHAPE_CACHE)))
    if problems:
        raise SpecError(problems)
    return dict(shapes), dict(counts)


_SHAPE_CACHE: dict[str, tuple] = {}


def _infer_shapes(spec: Spec, order: list[str], domains: dict[str, str],
                  params: dict[str, BaseModel]) -> tuple[dict, dict, list[Problem]]:
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
            except Exception as e:  # noqa: BLE001 - a block's own error: report it at its node
                msg = _one_line(e)
                if not msg.startswith(node.block):
                    msg = f"{node.block}: {msg}"
                problems.append(Problem(f"model.nodes.{short_id(nid)}", msg))
                continue
            v = values[nid]
            problems += _check_value(nid, node, domains[nid], v)
            shapes[nid] = _spec_of(domains[nid], v)
    finally:
        hook.remove()
    out = spec.model.output
    if out in shapes and shapes[out].shape != img:
        problems.append(Problem("model.output", f"{short(out)} gives shape {shapes[out].shape}, "
                                f"expected {img} to match image"))
    problems += _check_memory(spec, act_bytes[0] / SHAPE_BATCH, sum(counts.values()))
    return shapes, counts, problems


def _check_value(nid: str, node: NodeSpec, domain: str, v) -> list[Problem]:
    import torch

    if not isinstance(v, torch.Tensor):
        return [Problem(f"model.nodes.{short_id(nid)}", f"{node.block} returned "
                        f"{type(v).__name__}, "
                        "expected a tensor")]
    if (domain == "complex") != v.is_complex():
        return [Problem(f"model.nodes.{short_id(nid)}", f"{node.block} declares {domain} "
                        "output but "
                        f"returned {v.dtype}")]
    return []


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return _cut(text[0], 200) if text else type(e).__name__


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


def ensure_validated(spec: Spec) -> Spec:
    """Run the layers once unless done (what :func:`archspec.ensure_validated` does)."""
    if spec._validated is None:
        ensure_layers(spec)
    return spec
