"""The README is a guide whose examples are the real thing: its spec is the example file, its
commands exist, the "Extending" recipes (block, metric, dataset, plugin) register and work as
printed. Measurements live in docs/, each table with its command, date, commit and machine."""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MEASURED_DOCS = sorted([ROOT / "docs" / "performance.md", ROOT / "docs" / "processes.md",
                        *(ROOT / "docs" / "results").glob("*.md")])


def _block_after(marker: str, lang: str) -> str:
    """The first ```lang fenced block after ``marker`` in the README."""
    start = README.index(marker)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, start)
    assert m, f"no ```{lang} block after {marker!r}"
    return m.group(1)


def test_readme_spec_is_the_example_file():
    text = _block_after("A spec, `examples/specs/tiny_unet_8.yaml` in full", "yaml")
    assert text == (ROOT / "examples" / "specs" / "tiny_unet_8.yaml").read_text()


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """Import a README snippet as a module; undo its registrations afterwards."""
    from blocks import BLOCKS
    from evaluator.data.datasets import DATASETS
    from evaluator.measure.registry import METRICS

    registries = (BLOCKS, METRICS, DATASETS)
    before = [set(r.names()) for r in registries]
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def load(marker: str, module: str):
        (tmp_path / f"{module}.py").write_text(_block_after(marker, "python"))
        names.append(module)
        return importlib.import_module(module)

    yield load
    for reg, old in zip(registries, before):
        for n in set(reg.names()) - old:
            reg.remove(n)
    for n in names:
        sys.modules.pop(n, None)


def test_block_recipe(recipe):
    from archspec import build_model, spec_from_dict
    from tests.blocks.test_registry import check_block, check_documented_and_strict

    recipe("**A block**", "readme_block")
    check_block("my_gain")
    check_documented_and_strict("my_gain")
    spec = spec_from_dict({"name": "g", "image": {"channels": 1, "size": 8},
                           "model": {"nodes": {"x": {"block": "input"},
                                               "y": {"block": "my_gain", "in": ["x"],
                                                     "gain": 2.0}}, "output": "y"}})
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(build_model(spec)(x, torch.zeros(2)), 2 * x)


def test_metric_recipe(recipe):
    from evaluator.measure.quality import quality_metrics
    from evaluator.report.tables import metric_columns

    recipe("**A metric**", "readme_metric")
    samples, data = torch.full((4, 1, 8, 8), 0.5), torch.full((6, 1, 8, 8), -0.25)
    got = {m["metric"]: m for m in quality_metrics(samples, data, None)}
    assert got["mean-gap"]["status"] == "ok" and got["mean-gap"]["value"] == pytest.approx(0.75)
    assert "mean-gap" in metric_columns([{"metrics": {"mean-gap": {"mean": 0.75}}}])


def test_dataset_recipe(recipe):
    from evaluator.data.datasets import load_dataset

    recipe("**A dataset**", "readme_data")
    tr, te = load_dataset("checker8"), load_dataset("checker8", split="test")
    assert (len(tr), len(te)) == (48, 16) and tr.image_shape == (1, 8, 8)
    assert float(tr.images.abs().max()) <= 1.0


def test_plugin_recipe_names_the_real_entry_point_group():
    from blocks.plugins import ENTRY_POINT_GROUP

    toml = _block_after("**A plugin package**", "toml")
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in toml


# ------------------------------------------------------------------ the README as a guide
def test_readme_is_a_short_guide():
    n = len(README.splitlines())
    assert n <= 400, f"README.md has {n} lines; measurements and details belong in docs/"
    for section in ("## Set-up", "## A 5-minute tour", "## Specs", "## The app", "## Sweeps",
                    "## Extending", "## Bad input", "## Environment variables",
                    "## Performance", "## Results"):
        assert section in README, f"README lost its section {section!r}"


@pytest.mark.parametrize("path", [ROOT / "README.md", *MEASURED_DOCS], ids=lambda p: p.name)
def test_no_issue_numbers_a_reader_cannot_look_up(path):
    text = path.read_text()
    found = re.findall(r"(?i)\bissues?[ -]\d+\b|(?<![\w&/])#\d+\b", text)
    assert not found, f"{path.name} points to issue numbers: {found}"


def _commands_in_code(text: str, tool: str) -> set[str]:
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    return {m for b in blocks for m in re.findall(rf"(?:^|[\s(=]){tool} ([a-z][\w-]*)", b, re.M)}


def test_readme_commands_exist():
    from app.cli import COMMANDS

    used = _commands_in_code(README, "archsearch")
    assert {"validate", "evaluate", "sweep"} <= used   # the parser itself found something
    assert used <= set(COMMANDS), f"unknown archsearch commands: {used - set(COMMANDS)}"
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    made = _commands_in_code(README, "make")
    assert {"demo", "test"} <= made and made <= targets, f"unknown make targets: {made - targets}"


def test_readme_and_docs_links_resolve():
    for path in [ROOT / "README.md", *MEASURED_DOCS]:
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if not re.match(r"[a-z]+://", link):
                assert (path.parent / link).exists(), f"{path.name}: broken link {link}"


# ------------------------------------------------------------------ measurements in docs/
MEASURED = re.compile(r"^Measured[^:]*: (\d{4}-\d{2}-\d{2}), commit ([0-9a-f]{7,40})\b.*"
                      r"\b\d+ (?:idle )?CPU cores\b", re.M)


def _tables(text: str):
    """Each Markdown table with the text that leads to it (since the last heading or table)."""
    lead: list[str] = []
    lines = text.splitlines() + [""]
    table: list[str] = []
    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            yield "\n".join(lead), table
            lead, table = [], []
        lead = [] if line.startswith("#") else lead + [line]


def test_every_measured_table_has_its_command_date_commit_and_machine():
    assert {p.name for p in MEASURED_DOCS} >= {"performance.md", "processes.md", "demo.md",
                                                "samplers.md", "ablations.md"}
    count = 0
    for path in MEASURED_DOCS:
        for lead, table in _tables(path.read_text()):
            count += 1
            where = f"{path.name}, table {table[0]!r}"
            assert re.search(r"^Command\b.*:", lead, re.M), f"{where}: no 'Command:' line"
            assert MEASURED.search(lead), f"{where}: no 'Measured: DATE, commit HASH, N CPU cores'"
    assert count >= 12   # the tables that left the README


def _git(*args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def test_measured_commits_exist_and_match_their_dates():
    if _git("rev-parse", "--is-shallow-repository") != "false":
        pytest.skip("needs the project's full git history")
    for path in MEASURED_DOCS:
        for date, commit in MEASURED.findall(path.read_text()):
            got = _git("show", "-s", "--format=%ad", "--date=short", f"{commit}^{{commit}}")
            assert got == date, f"{path.name}: commit {commit} is dated {got}, not {date}"
