"""The archsearch command: exit codes, messages, schema, and light start-up."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import MINIMAL, ROOT, SPECS


def test_validate_ok(capsys):
    assert main(["validate", str(SPECS / "tiny_unet_8.yaml")]) == 0
    assert "tiny_unet_8.yaml: ok (tiny_unet_8, " in capsys.readouterr().out


def test_validate_bad_prints_one_line_per_problem(write_spec, capsys):
    bad = write_spec(MINIMAL.replace("size: 8", "size: -1").replace("rfft2, in", "rfft3, in"))
    good = write_spec(MINIMAL, "good.yaml")
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # a bad image does not hide the unknown blocks: independent layers report together
    assert err == [f"{bad}: image.size: expected >= 2, got -1",
                   f"{bad}: model.nodes.f.block: unknown block 'rfft3' (did you mean 'rfft2', "
                   "'irfft2', 'fft2'?)",
                   f"{bad}: model.nodes.y.block: unknown block 'irfft3' (did you mean "
                   "'irfft2', 'rfft2', 'ifft2'?)"]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("content", [b"\x00\x01\x02", b"name: [", b"", b"\xff\xfe"])
def test_validate_bad_input_exit_2_without_traceback(tmp_path, content):
    p = tmp_path / "x.yaml"
    p.write_bytes(content)
    r = subprocess.run([sys.executable, "-m", "app.cli", "validate", str(p)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{p}: ") and len(r.stderr.strip().splitlines()) == 1


def test_show_prints_table(capsys):
    assert main(["show", str(SPECS / "tiny_unet_8_graph.yaml")]) == 0
    out = capsys.readouterr().out
    assert "node" in out and "e1" in out and "resblock" in out and "32x8x8" in out
    assert "spec hash: " in out


def test_blocks_lists_registry(capsys):
    assert main(["blocks", "--json"]) == 0
    listing = {b["block"]: b for b in json.loads(capsys.readouterr().out)}
    assert listing["rfft2"]["takes"] == ["real"] and listing["rfft2"]["gives"] == "complex"
    assert "channels" in listing["conv"]["params"]


def test_schema_validates_examples_and_rejects_typos(capsys):
    import jsonschema
    import yaml

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    for p in SPECS.glob("*.yaml"):
        errors = list(validator.iter_errors(yaml.safe_load(p.read_text())))
        assert not errors, (p.name, errors[:1])
    bad = yaml.safe_load((SPECS / "tiny_unet_8_graph.yaml").read_text())
    bad["model"]["nodes"]["e1"]["chanels"] = 3
    assert list(validator.iter_errors(bad))


def test_usage_error_exit_2():
    r = subprocess.run([sys.executable, "-m", "app.cli", "validate"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "usage:" in r.stderr


HEAVY = ["torch", "gradio", "lpips", "torch_fidelity", "diffusers", "pydantic", "networkx"]


def _imported_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom app.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('IMPORTED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("IMPORTED:"), r.stdout + r.stderr
    return set(filter(None, line.removeprefix("IMPORTED:").split(",")))


def test_help_imports_nothing_heavy():
    assert _imported_after(["--help"]) == set()


def test_validate_imports_only_what_it_needs():
    mods = _imported_after(["validate", str(SPECS / "tiny_unet_8.yaml")])
    assert mods <= {"torch", "pydantic", "networkx"}
    assert not mods & {"gradio", "lpips", "torch_fidelity", "diffusers"}


def test_committed_schema_is_current():
    """examples point editors at spec.schema.json; it must match the registry."""
    from archspec import json_schema

    committed = json.loads((ROOT / "spec.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), \
        "regenerate with: archsearch schema > spec.schema.json"


# ---- every entry point: user errors exit 2 with located lines, bugs exit 1 in one line -------
def test_validate_keeps_checking_after_a_crash(write_spec, monkeypatch, capsys):
    import archspec

    real = archspec.load_spec
    first = write_spec(MINIMAL, "first.yaml")
    bad = write_spec("name: [", "bad.yaml")

    def flaky(path, overrides=None):
        if str(path) == str(first):
            raise KeyError("internal")
        return real(path, overrides)

    monkeypatch.setattr(archspec, "load_spec", flaky)
    good = SPECS / "tiny_unet_8.yaml"
    assert main(["validate", str(first), str(bad), str(good)]) == 1  # a bug outranks exit 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{first}: internal error in validate (KeyError: 'internal')")
    assert lines[1].startswith(f"{bad}: line ") and "invalid YAML" in lines[1]
    assert f"{good}: ok" in out
    Path(lines[0].split("Full traceback: ")[1]).unlink()


@pytest.mark.parametrize("argv,msg", [
    (["profile", "--device", "nope", str(SPECS / "tiny_unet_8.yaml")],
     "--device: unknown device 'nope'"),
    (["profile", "--device", "mps", str(SPECS / "tiny_unet_8.yaml")], "--device: "),
    (["profile", "--blocks", "--only", "convv"],
     "--only convv: unknown block (did you mean 'conv'"),
    (["profile", "--only", "conv", str(SPECS / "tiny_unet_8.yaml")], "add --blocks"),
    (["blocks", "--family", "spacial"], "--family: unknown family 'spacial'; known: "),
    (["show", "-o", "vars.widht=3", str(SPECS / "tiny_unet_8.yaml")],
     "vars.widht: override 'vars.widht=3': no such variable (did you mean 'width'?)"),
])
def test_bad_arguments_exit_2_with_one_line(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err
