"""The spec language: load, validate, hash and assemble declarative diffusion pipelines.

>>> from archspec import load_spec, build_model
>>> spec = load_spec("examples/specs/tiny_unet_8.yaml", overrides=["vars.width=64"])
>>> model = build_model(spec)        # model(x_t, t) -> prediction, pixel space (B, C, H, W)

``load_spec`` raises :class:`SpecError` listing every problem with its location.
Importing this package is cheap: torch is imported only when shapes are inferred or a
model is built.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from archspec.errors import Problem, SpecError, UserError

if TYPE_CHECKING:
    from archspec.spec import Spec, ValidatedSpec

__all__ = [
    "Problem", "SPEC_VERSION", "Spec", "SpecError", "UserError", "ValidatedSpec", "arch_hash",
    "build_model", "canonical", "ensure_validated", "json_schema", "load_spec", "rehash",
    "registry_version", "spec_from_dict", "spec_hash", "validated",
]


def __getattr__(name: str) -> Any:
    # pydantic is imported on first use, so `archsearch --help` stays instant
    if name in ("Spec", "SPEC_VERSION", "ValidatedSpec"):
        from archspec import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'archspec' has no attribute {name!r}")


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Read, upgrade, override, resolve and fully validate the spec at ``path``.

    Raises:
        SpecError: every problem found, each located (``PATH: location: message``).
    """
    from archspec.loading import read_document

    data = read_document(path)
    try:
        spec = spec_from_dict(data, overrides, source=str(path))
    except SpecError as e:
        raise SpecError(e.problems, str(path)) from None
    return spec


def spec_from_dict(data: dict[str, Any], overrides: list[str] | None = None, *,
                   source: str | None = None) -> Spec:
    """Validate plain data (as parsed from YAML/JSON) into a checked :class:`Spec`.

    ``source`` names where the data came from (kept in ``spec.validated.source``).
    """
    import dataclasses

    from archspec.loading import apply_overrides, plain, resolve_vars, upgrade
    from archspec.validate import validate

    data = upgrade(plain(data))  # deep copy; rejects non-JSON values with their location
    data = apply_overrides(data, list(overrides or []))
    spec = validate(resolve_vars(data))
    spec._validated = dataclasses.replace(spec._validated, source=source)
    return spec


def ensure_validated(spec: Spec) -> Spec:
    """Run the block, graph, domain and shape layers once (``spec.validated`` caches them).

    Specs from :func:`load_spec` and :func:`spec_from_dict` are validated already; this
    serves specs built directly with ``Spec.model_validate``.
    """
    from archspec.validate import ensure_validated as _ensure

    return _ensure(spec)


def validated(spec: Spec) -> ValidatedSpec:
    """The :class:`ValidatedSpec` of ``spec`` (order, shapes, params, domains, source)."""
    return ensure_validated(spec)._validated


def build_model(spec: Spec):
    """Assemble the spec's model (an ``nn.Module``; ``model(x_t, t)`` in pixel space)."""
    from archspec.assemble import build_model as _build

    return _build(spec)


def canonical(spec: Spec) -> dict[str, Any]:
    """The fully resolved spec: vars substituted, every default filled (JSON types).

    Node parameters are read through each block's parameter model; a unet's stage
    parameters too, where a value equal to its default is left out (see
    :func:`blocks.unet_params.canonical_params`), so writing a default never changes it.
    """
    return _canonical(spec, validated(spec).params)


def _canonical(spec: Spec, params: dict[str, Any]) -> dict[str, Any]:
    data = spec.model_dump(mode="json", by_alias=True)
    # unset optional fields are left out: keeps hashes from before each field existed
    for section, key in (("train", "data_root"), ("train", "init_from"),
                         ("evaluate", "convergence")):
        if data[section].get(key, 0) is None:
            del data[section][key]
    if data["diffusion"].get("process") == {"kind": "isotropic"}:
        del data["diffusion"]["process"]  # the default process: keeps hashes from before it
    for nid, node in spec.model.nodes.items():
        p = params[nid].model_dump(mode="json")
        data["model"]["nodes"][nid] = {"block": node.block, "in": list(node.in_), **p}
    return json.loads(json.dumps(data))  # plain JSON types; key order as declared


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _spec_digest(data: dict[str, Any]) -> str:
    return _digest({k: v for k, v in data.items() if k not in ("name", "description", "vars")})


def _arch_digest(data: dict[str, Any]) -> str:
    return _digest({"image": data["image"], "model": data["model"]})


def spec_hash(spec: Spec) -> str:
    """Hash of everything that changes a run: the canonical form minus labels and vars."""
    return _spec_digest(canonical(spec))


def arch_hash(spec: Spec) -> str:
    """Hash of the architecture alone (image shape and model graph)."""
    return _arch_digest(canonical(spec))


def rehash(resolved: dict[str, Any], *, arch: bool = False) -> str:
    """The spec hash (``arch=True``: the architecture hash) that a stored resolved spec has
    under the current canonical form, for re-keying results stored by an older toolkit.

    ``resolved`` is a run's ``spec.resolved.json`` (:func:`canonical` as it was then). Its
    schema and block parameters are validated, which is all the canonical form depends on;
    the graph is not built. Pure: no files, no random numbers, ``resolved`` is not changed.
    Since unet stage parameters became canonical, a spec whose ``encoder``/``decoder``/
    ``head`` params (or their ``attention``/``resample`` params) wrote a block default, or
    wrote a float parameter as an integer, hashes differently; every other spec keeps its
    hash: ``rehash(old) == old_hash``.

    Raises:
        SpecError: ``resolved`` is not a valid spec's schema or block parameters.
    """
    from archspec.loading import plain, resolve_vars, upgrade
    from archspec.validate import check_blocks, check_schema

    spec, _bad, problems = check_schema(resolve_vars(upgrade(plain(resolved))))
    if not problems:
        params, problems = check_blocks(spec)
    if problems:
        raise SpecError(problems)
    data = _canonical(spec, params)
    return _arch_digest(data) if arch else _spec_digest(data)


def registry_version() -> str:
    """Fingerprint of the block registry: names, domains and parameter schemas."""
    import blocks

    return _digest({n: [e.takes, e.gives, e.params.model_json_schema()]
                    for n, e in blocks.BLOCKS.items()})


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec format, with each block's parameters as node variants."""
    from archspec.schema import build_schema

    return build_schema()
