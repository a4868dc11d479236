"""Bad input: every malformed file gets a clear SpecError fast, never a hang or a crash."""
from __future__ import annotations

import re
import time

import pytest

from archspec import SpecError, load_spec
from archspec.loading import MAX_BYTES
from tests.conftest import MINIMAL


def _problems(path) -> list[str]:
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as ei:
        load_spec(path)
    assert time.perf_counter() - t0 < 5, "bad input must be refused quickly"
    return ei.value.lines()


def test_minimal_spec_loads(write_spec):
    spec = load_spec(write_spec(MINIMAL))
    assert spec.name == "fft_roundtrip" and spec.image.size == 8


@pytest.mark.parametrize("text,match", [
    ("name: [unclosed\n", r"line 2 column 1: invalid YAML: (did not find )?expected ',' or ']'"),
    ("a: b\n  c: d\n", "invalid YAML"),
    ("- just\n- a list\n", "top level must be a mapping, got list"),
    ("42\n", "top level must be a mapping, got int"),
    ("   \n\n", "empty file"),
    ("name: !!python/object/apply:os.system ['echo hi']\n",
     r"name: line 1: YAML type !!python/object/apply.* is not a spec value"),
])
def test_malformed_yaml(write_spec, text, match):
    path = write_spec(text)
    lines = _problems(path)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: ")
    assert re.search(match, lines[0]), lines


def test_malformed_json(write_spec):
    (line,) = _problems(write_spec('{"name": "x",, }', "spec.json"))
    assert "spec.json: line 1 column 14: invalid JSON" in line


def test_binary_garbage(write_spec, tmp_path):
    p = tmp_path / "garbage.yaml"
    p.write_bytes(bytes(range(256)) * 4)
    (line,) = _problems(p)
    assert "binary file" in line


def test_non_utf8(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    (line,) = _problems(p)
    assert "not UTF-8 text (byte 9)" in line


def test_missing_file(tmp_path):
    (line,) = _problems(tmp_path / "nope.yaml")
    assert line.endswith("nope.yaml: no such file")


def test_too_large(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("# " + "x" * MAX_BYTES + "\n")
    (line,) = _problems(p)
    assert f"limited to {MAX_BYTES} bytes" in line


def test_billion_laughs(write_spec):
    lol = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lol.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    # 81 aliases that would expand to 9**9 values: refused by the expansion budget
    (line,) = _problems(write_spec("\n".join(lol) + "\n"))
    assert "document too large (over 100000 values)" in line


def test_alias_cap(write_spec):
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    (line,) = _problems(write_spec(text))
    assert "more than 100 YAML aliases" in line


def test_few_aliases_are_fine(write_spec):
    text = MINIMAL.replace("image: {channels: 1, size: 8}",
                           "image: &img {channels: 1, size: 8}\nvars: {im: *img}")
    assert load_spec(write_spec(text)).vars["im"] == {"channels": 1, "size": 8}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_deep_nesting(write_spec, fmt):
    depth = 10_000
    text = "[" * depth + "]" * depth if fmt == "json" else "a: " + "[" * depth + "]" * depth
    (line,) = _problems(write_spec(text + "\n", f"deep.{fmt}"))
    assert "nesting too deep" in line


def test_moderate_nesting_reports_depth_limit(write_spec):
    text = "vars: {v: " + "[" * 100 + "]" * 100 + "}\n" + MINIMAL
    (line,) = _problems(write_spec(text))
    assert "nesting too deep (limit 64 levels)" in line
