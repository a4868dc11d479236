"""Reports of a results folder: ``report.md`` and one self-contained ``report.html``.

The HTML embeds plotly.js inline and the sample grids as base64 PNGs, so it opens
offline and can be mailed as a single file. Charts: quality vs NFE per sampler and
pipeline (mean +- 95% CI when there are several seeds), training loss curves, spectral
energy per radial band (data vs samples), and sample grids.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Callable

from archspec.errors import UserError
from evaluator.report.figures import (band_error_figure, convergence_figure, loss_figure,
                                      quality_figure, quality_metric, spectra_figure)
from evaluator.report.tables import (BAND_ERROR_NOTE, band_error_table, convergence_table,
                                     html_table, md_table, results_table, runs_table,
                                     settings_notes, stability_notes, unavailable_notes)
from evaluator.store.atomic import atomic_write
from evaluator.store.queries import best_eval
from evaluator.store.rundir import RunDir, list_runs


def collect(root: str | Path) -> list[RunDir]:
    """The runs of a results root, or the single run when ``root`` is a run folder."""
    p = Path(root)
    if not p.is_dir():
        raise UserError(f"{p}: no such results folder")
    if (p / "spec.resolved.json").is_file():
        return [RunDir.open(p)]
    runs = list_runs(p)
    if not runs:
        raise UserError(f"{p}: no runs found (expected {p}/runs/<name>/<hash>/)")
    return runs


# ---- writers ----------------------------------------------------------------------------------
def readable_runs(runs: list[RunDir]) -> tuple[list[RunDir], list[str]]:
    """(runs whose files read, one line per unreadable file naming it): a corrupt
    ``status.json``, ``metrics.json`` or ``spectra.json`` skips its run, not the report."""
    from evaluator.store.atomic import CorruptRunFile, read_json

    ok, skipped = [], []
    for run in runs:
        try:
            run.status(), run.metrics(), read_json(run.spectra_file, default={})
        except CorruptRunFile as e:
            skipped.append(e.problems[0].msg)
            continue
        ok.append(run)
    return ok, skipped


def report(root: str | Path, out: str | Path | None = None,
           on_skip: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for the runs under ``root``.

    Args:
        root: a results root (holding ``runs/``) or a single run folder.
        out: folder for the two files (default ``root``).
        on_skip: called with one line per run skipped because a file of it is corrupt
            (the report lists them too).

    Returns:
        (markdown path, html path).
    """
    runs, skipped = readable_runs(collect(root))
    for line in skipped:
        if on_skip is not None:
            on_skip(line)
    if not runs:
        raise UserError(f"{root}: no readable runs ({len(skipped)} skipped)")
    out_dir = Path(out) if out is not None else Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    metric = quality_metric(runs)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md = _markdown(runs, metric, out_dir)
    if skipped:
        md += "\n## Skipped runs (unreadable files)\n\n" + "".join(f"- {x}\n" for x in skipped)
    atomic_write(md_path, lambda f: f.write(md), "w")
    page = _html(runs, metric)
    atomic_write(html_path, lambda f: f.write(page), "w")
    return md_path, html_path


def _grids(run: RunDir) -> list[Path]:
    """The grids of the evaluation the report shows (never ones ``sample`` wrote)."""
    budget, _ = best_eval(run)
    return run.eval_grid_files(budget) if budget else []


def _markdown(runs: list[RunDir], metric: str | None, out_dir: Path) -> str:
    parts = ["# Architecture search report", "",
             f"{len(runs)} run(s). Interactive charts: `report.html` (self-contained).", "",
             "## Runs", "", md_table(runs_table(runs)), "",
             *_stability_md(runs),
             "## Quality vs NFE", "", md_table(results_table(runs, metric)), "",
             *[f"- {n}" for n in _settings(runs)], ""]
    bands = band_error_table(runs)
    if bands:
        parts += ["## Per-band error", "", BAND_ERROR_NOTE, "", md_table(bands), ""]
    conv = convergence_table(runs)
    if conv:
        parts += ["## Convergence", "", f"{conv[1]} of the EMA snapshots kept along training "
                  "(`evaluate.convergence`); chart in `report.html`.", "",
                  md_table(conv[0]), ""]
    notes = unavailable_notes(runs)
    if notes:
        parts += ["Metrics not computed:", ""] + [f"- {n}" for n in notes] + [""]
    parts += ["## Samples", ""]
    for run in runs:
        for png in _grids(run):
            rel = _relpath(png, out_dir)
            parts.append(f"![{run.name} {png.stem}]({rel})")
    return "\n".join(parts) + "\n"


def _stability_md(runs: list[RunDir]) -> list[str]:
    notes = stability_notes(runs)
    if not notes:
        return []
    return ["**Stability warnings** (spectral blocks whose activation or gradient norm "
            "blew up during training):", "", *[f"- WARNING: {n}" for n in notes], ""]


def _settings(runs: list[RunDir]) -> list[str]:
    rows = [r for run in runs for ev in run.metrics().get("eval", {}).values()
            for r in ev.get("results", [])]
    return settings_notes(rows)


def _relpath(p: Path, base: Path) -> str:
    import os
    return os.path.relpath(p.resolve(), base.resolve())


def _html(runs: list[RunDir], metric: str | None) -> str:
    from plotly.offline import get_plotlyjs

    figs = []
    if metric:
        figs.append(quality_figure(runs, metric))
    figs += [loss_figure(runs), spectra_figure(runs)]
    bands = band_error_table(runs)
    if bands:
        figs.append(band_error_figure(runs))
    conv = convergence_table(runs)
    if conv:
        figs.append(convergence_figure(runs, conv[1]))
    charts = "\n".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figs)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in unavailable_notes(runs))
    grids = "\n".join(_img_tag(run, png) for run in runs for png in _grids(run))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Architecture search report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
figure{{display:inline-block;margin:6px}} img{{image-rendering:pixelated;width:256px}}</style>
<script type="text/javascript">{get_plotlyjs()}</script></head><body>
<h1>Architecture search report</h1>
<h2>Runs</h2>{html_table(runs_table(runs))}
{_stability_html(runs)}
<h2>Quality vs NFE</h2>{html_table(results_table(runs, metric))}
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in _settings(runs))}</ul>
<ul>{notes}</ul>
{_band_html(bands)}
{f"<h2>Convergence</h2>{html_table(conv[0])}" if conv else ""}
<h2>Charts</h2>{charts}
<h2>Samples</h2>{grids}
</body></html>
"""


def _band_html(rows: list[list[str]] | None) -> str:
    if not rows:
        return ""
    return f"<h2>Per-band error</h2><p>{html.escape(BAND_ERROR_NOTE)}</p>{html_table(rows)}"


def _stability_html(runs: list[RunDir]) -> str:
    notes = stability_notes(runs)
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f'<h3 style="color:#b00">Stability warnings</h3><ul>{items}</ul>'


def _img_tag(run: RunDir, png: Path) -> str:
    b64 = base64.b64encode(png.read_bytes()).decode()
    cap = html.escape(f"{run.name} {png.stem.removeprefix('eval_')}")
    return (f'<figure><img alt="{cap}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{cap}</figcaption></figure>")
