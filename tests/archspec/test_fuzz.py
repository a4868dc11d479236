"""Property-based fuzzing of the spec gate (issue 11).

The example specs are mutated (keys and values deleted, inserted, retyped, duplicated,
reordered; the document re-encoded as YAML or JSON and damaged as text; random unicode,
NaN/inf, huge numbers, deep nesting). For every case ``load_spec`` either returns a spec
that builds and runs a forward pass, or raises :class:`SpecError` whose every line is
``PATH: location: message`` on one line. Any other exception fails the test, and
hypothesis prints the smallest case it finds.

Counts: ``ARCHSEARCH_FUZZ_EXAMPLES`` (default 2000, derandomized so the suite is stable);
``make fuzz`` runs 10,000 fresh random cases. A forward pass runs on a sample of the
accepted specs (every ``ARCHSEARCH_FUZZ_FORWARD_EVERY``-th, default 10, and always the
first); every accepted spec has its validated shapes checked against the image.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec import SpecError, build_model, load_spec, spec_from_dict
from archspec.loading import parse_text
from tests.conftest import MINIMAL, SPECS

EXAMPLES = int(os.environ.get("ARCHSEARCH_FUZZ_EXAMPLES", "2000"))
FORWARD_EVERY = int(os.environ.get("ARCHSEARCH_FUZZ_FORWARD_EVERY", "10"))
RANDOM = os.environ.get("ARCHSEARCH_FUZZ_RANDOM", "") == "1"   # make fuzz: fresh cases

BASES = [parse_text(MINIMAL, "yaml")] + [parse_text(p.read_text(), "yaml")
                                          for p in sorted(SPECS.glob("*_8*.yaml"))]


def _all_keys(obj, out: set) -> set:
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(k)
            _all_keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _all_keys(v, out)
    return out


KNOWN_KEYS = sorted(_all_keys(BASES, set()) | {"in", "block", "data_root", "predicts",
                                                 "spec_version", "graph", "inputs"})
WORDS = ["${vars.width}", "${vars.nope}", "${vars.", "${vars.width}x", "on", "off", "..", ".",
         "", " ", "\x00", "\u202e", "ddim", "ddpm", "conv", "rfft2", "irfft2", "input",
         "epsilon", "x0", "v", "digits", "folder", "cifar10", "real", "x", "t", "eps",
         "2024-05-01", "a" * 200]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=70),
    st.sampled_from([0, 1, 2, 3, 4, 8, 16, 32, 64, 999, 1000, 1001, 4096, 10**6, 2**31,
                     2**63, -2**63, 10**30]),
    st.integers(),                                           # occasionally very large
    st.integers(min_value=20, max_value=400).map(lambda n: 10**n),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 1e-3, 1e300, -0.0]),
    st.text(max_size=12),                                    # random unicode
    st.sampled_from(WORDS),
)
values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4)
    | st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8)), c,
                      max_size=4), max_leaves=8)


def deep(n: int):
    v: object = 1
    for i in range(n):
        v = [v] if i % 2 else {"a": v}
    return v


RAW = ["9" * 5000, "2024-05-01", "!!binary aGVsbG8=", "!!set {a, b}", ".nan", "-.inf", "on",
       "0x1F", "1e999", "0o777", "1:20:30", "!!python/object/apply:os.system [x]", "&a [*a]",
       "[[[[[[[[[[[[[[[[[[[[", "{a: 1, a: 2}", "~", "'\\u0000'", "\"\\ud800\"", "*nope",
       "!!omap [a: 1]", "!!timestamp 2001-12-14", "| \n  block"]


def paths(obj, prefix=()):
    """Every (container, key) in ``obj``, parents before children."""
    out = []
    if isinstance(obj, dict):
        for k in list(obj):
            out.append((obj, k))
            out += paths(obj[k])
    elif isinstance(obj, list):
        for i in range(len(obj)):
            out.append((obj, i))
            out += paths(obj[i])
    return out


@st.composite
def cases(draw):
    """(kind, payload): ``("text", (text, suffix))`` or ``("dict", data)``."""
    data = json.loads(json.dumps(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(1, 3))):
        spots = paths(data)
        op = draw(st.sampled_from(["delete", "insert", "retype", "retype", "duplicate",
                                   "reorder", "deep", "nodes", "tweak", "tweak", "tweak"]))
        if not spots:
            break
        container, key = draw(st.sampled_from(spots))
        if op == "delete":
            del container[key]
        elif op == "insert":
            if isinstance(container, dict):
                container[draw(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=70)))] = \
                    draw(values)
            else:
                container.insert(key, draw(values))
        elif op == "retype":
            container[key] = draw(values)
        elif op == "duplicate":
            if isinstance(container, dict):
                container[draw(st.sampled_from(KNOWN_KEYS))] = json.loads(
                    json.dumps(container[key]))
            else:
                container.append(json.loads(json.dumps(container[key])))
        elif op == "reorder" and isinstance(container.get(key) if isinstance(container, dict)
                                            else container[key], dict):
            d = container[key]
            order = draw(st.permutations(list(d)))
            container[key] = {k: d[k] for k in order}
        elif op == "tweak":  # a plausible edit, so that many cases pass and get built
            ints = [(c, k) for c, k in spots if type(c[k]) is int]
            if ints:
                c, k = draw(st.sampled_from(ints))
                c[k] = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 24, 32, 48, 64, 128, 1000]))
            elif isinstance(container, dict):
                container.pop(key)
        elif op == "deep":
            container[key] = deep(draw(st.integers(1, 100)))
        elif op == "nodes":  # graph surgery: rewire an input or rename a node
            nodes = data.get("model", {}).get("nodes") if isinstance(data.get("model"),
                                                                    dict) else None
            if isinstance(nodes, dict) and nodes:
                nid = draw(st.sampled_from(sorted(nodes, key=str)))
                node = nodes[nid]
                if isinstance(node, dict) and draw(st.booleans()):
                    node["in"] = draw(st.lists(st.sampled_from(sorted(nodes, key=str) + ["nope"]),
                                               max_size=3))
                else:
                    nodes[draw(st.sampled_from(["on", "n_1", "1x", "a" * 80, "e1"]))] = \
                        nodes.pop(nid)
    if draw(st.integers(0, 9)) == 0:
        return "dict", data
    fmt = draw(st.sampled_from(["yaml", "yaml", "json"]))
    if fmt == "json":
        text = json.dumps(data, ensure_ascii=draw(st.booleans()),
                          indent=draw(st.sampled_from([None, 2])))
    else:
        text = yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                         allow_unicode=draw(st.booleans()), sort_keys=False,
                         default_flow_style=draw(st.sampled_from([False, None])))
    for _ in range(draw(st.integers(0, 2))):
        lines = text.splitlines()
        how = draw(st.sampled_from(["dup_line", "raw", "unicode", "cut"]))
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        if how == "dup_line" and lines:          # a duplicated line: often a duplicate key
            lines.insert(at, lines[at])
        elif how == "raw":
            key = draw(st.sampled_from(KNOWN_KEYS))
            lines.insert(at if fmt == "yaml" else len(lines),
                         f"{key}: {draw(st.sampled_from(RAW))}")
        elif how == "unicode":
            pos = draw(st.integers(0, len(text)))
            text = text[:pos] + draw(st.text(min_size=1, max_size=3)) + text[pos:]
            continue
        elif how == "cut":
            text = text[: draw(st.integers(0, len(text)))]
            continue
        text = "\n".join(lines) + "\n"
    return "text", (text, fmt)


def _check_error(e: SpecError, source: str | None) -> None:
    assert e.problems, "a SpecError lists its problems"
    for p in e.problems:  # each part printable on its own, not only after lines()
        assert len(f"{p}".splitlines()) <= 1, repr(str(p))
    for line in e.lines():
        assert len(line.splitlines()) == 1 and "\n" not in line and "\r" not in line, line
        assert source is None or line.startswith(f"{source}: "), line
        assert len(line) < 800, line[:200]
        for internal in ("Traceback", "TensorSpec(", "<class ", "object at 0x"):
            assert internal not in line, line


def _check_accepted(spec, stats: Counter) -> None:
    v = spec.validated
    img = (spec.image.channels, spec.image.size, spec.image.size)
    assert v.shapes[spec.model.output].shape == img
    assert set(v.order) == set(spec.model.nodes)
    stats["accepted"] += 1
    if stats["accepted"] % FORWARD_EVERY != 1 and FORWARD_EVERY > 1:
        return
    if v.total_params > 3_000_000 or spec.image.size > 32:
        stats["too_big_to_run"] += 1
        return
    import torch

    torch.manual_seed(0)
    model = build_model(spec).eval()
    x = torch.randn(2, *img)
    with torch.no_grad():
        out = model(x, torch.tensor([3, 700]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    stats["forward"] += 1


@pytest.mark.slow
def test_fuzz_load_spec(tmp_path):
    stats: Counter = Counter()
    path = tmp_path / "spec"
    t0 = time.perf_counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=cases())
    def run(case):
        kind, payload = case
        stats["cases"] += 1
        if kind == "dict":
            try:
                spec = spec_from_dict(payload)
            except SpecError as e:
                stats["rejected"] += 1
                _check_error(e, None)
                return
        else:
            text, fmt = payload
            p = path.with_suffix(f".{fmt}")
            p.write_text(text, encoding="utf-8", errors="surrogatepass")
            try:
                spec = load_spec(p)
            except SpecError as e:
                stats["rejected"] += 1
                _check_error(e, str(p))
                return
        _check_accepted(spec, stats)

    run()
    took = time.perf_counter() - t0
    print(f"\nfuzz: {stats['cases']} cases ({stats['rejected']} rejected with SpecError, "
          f"{stats['accepted']} accepted, {stats['forward']} forward passes) in {took:.1f} s")
    assert stats["cases"] >= EXAMPLES
    assert stats["accepted"] > 0 and stats["rejected"] > 0, stats
