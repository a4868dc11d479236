"""archspec.locate: validating editor text, with each problem's line."""
from __future__ import annotations

import json

from archspec.locate import check_text, format_problems, line_of, path_parts
from tests.conftest import MINIMAL, SPECS

TEXT = """\
name: x
model:
  nodes:
    a: {block: input}
    b:
      block: conv
      in: [a, c]
  output: b
evaluate:
  samplers:
    - name: ddim
      steps: [5]
    - name: ddimm
      steps: [5]
"""


def test_path_parts():
    assert path_parts("model.nodes.e1.in[0]") == ["model", "nodes", "e1", "in", 0]
    assert path_parts("evaluate.samplers[1].name") == ["evaluate", "samplers", 1, "name"]


def test_line_of_walks_maps_and_lists():
    lines = TEXT.splitlines()
    assert line_of(TEXT, "model.nodes.b.block") == lines.index("      block: conv") + 1
    assert line_of(TEXT, "evaluate.samplers[1].name") == lines.index("    - name: ddimm") + 1
    assert line_of(TEXT, "model.nodes.a") == 4
    # a path that goes deeper than the text: the deepest part found
    assert line_of(TEXT, "model.nodes.b.channels") == 5
    assert line_of(TEXT, "nothing.here") is None
    assert line_of("a: [1,", "a") is None  # unparsable text


def test_check_text_good_and_bad():
    spec, problems = check_text(MINIMAL)
    assert problems == [] and spec.name == "fft_roundtrip"
    bad = MINIMAL.replace("in: [f]}", "in: [g]}").replace("size: 8", "size: 0")
    spec, problems = check_text(bad)
    assert spec is None
    for p in problems:  # every problem's line holds the key its path ends in
        key = [k for k in path_parts(p["loc"]) if isinstance(k, str)][-1]
        assert key in bad.splitlines()[p["line"] - 1], p
    # independent layers report together: the bad image does not hide the unknown input
    assert {p["loc"] for p in problems} == {"image.size", "model.nodes.y.in[0]"}


def test_graph_layer_problem_has_line():
    bad = MINIMAL.replace("y: {block: irfft2, in: [f]}", "y: {block: irfft2, in: [g]}")
    _, problems = check_text(bad)
    assert [p["loc"] for p in problems] == ["model.nodes.y.in[0]"]
    assert "y: {block: irfft2" in bad.splitlines()[problems[0]["line"] - 1]
    assert format_problems(problems, "s.yaml")[0].startswith(
        f"s.yaml:{problems[0]['line']}: model.nodes.y.in[0]: unknown node 'g'")
    assert format_problems(problems)[0].startswith(
        f"line {problems[0]['line']}: model.nodes.y.in[0]: unknown node 'g'")
    assert format_problems([{"loc": "", "msg": "m", "line": None}]) == ["m"]


def test_json_text_and_parse_errors():
    import yaml

    data = yaml.safe_load(MINIMAL)
    data["image"]["size"] = -1
    _, problems = check_text(json.dumps(data, indent=1), fmt="json")
    assert problems[0]["loc"] == "image.size" and problems[0]["line"] is not None
    _, problems = check_text("name: x\nimage: {a: 1\n")
    assert len(problems) == 1 and "invalid YAML" in problems[0]["msg"]
    assert problems[0]["line"] == 3
    assert check_text("")[1][0]["msg"] == "empty spec"
    assert "top level must be a mapping" in check_text("- 1\n")[1][0]["msg"]


def test_parse_error_says_its_line_once():
    from archspec.locate import check_text, format_problems

    (p,) = check_text("name: x\nimage: [1,\n")[1]
    assert p["line"] == 3
    (line,) = format_problems([p])
    assert line.startswith("line 3: column 1: invalid YAML") and line.count("line 3") == 1


def test_typo_in_a_variable_is_located_at_the_variable():
    from archspec.locate import check_text

    text = ("name: v\nimage: {channels: 1, size: 8}\nvars:\n  width: 8\n  kind: resblok\n"
            "model:\n  nodes:\n    x: {block: input}\n    t: {block: timestep}\n"
            "    temb: {block: time_embedding, in: [t], dim: 16}\n"
            "    eps: {block: \"${vars.kind}\", in: [x, temb], channels: 1}\n"
            "    o: {block: conv, in: [eps], channels: \"${vars.width}\"}\n"
            "  output: o\n")
    lines = text.splitlines()
    probs = check_text(text)[1]
    assert probs, "the typo must be found"
    kind = [p for p in probs if "resblok" in p["msg"]]
    assert kind and all("kind: resblok" in lines[p["line"] - 1] for p in kind)
    assert all("vars.kind" in p["msg"] for p in kind)
    # a problem not coming from a variable keeps its own line
    bad = text.replace("dim: 16", "dim: -1")
    dim = [p for p in check_text(bad)[1] if p["loc"].endswith("temb.dim")]
    assert dim and "dim: -1" in bad.splitlines()[dim[0]["line"] - 1]
