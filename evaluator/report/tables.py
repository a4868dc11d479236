"""Text tables of evaluated runs (markdown, HTML, the CLI's plain table) and their notes."""
from __future__ import annotations

import html
from typing import Any

from evaluator.store.queries import best_eval
from evaluator.store.rundir import RunDir


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Table columns, from the metric registry: each evaluated metric's declared columns
    (``<dataset>`` resolved from the rows), in registry order, where some row has a value."""
    from evaluator.measure.registry import METRICS

    names = list(dict.fromkeys(n for r in rows for n in r.get("metrics", {})))
    valued = {n for r in rows for n, m in r.get("metrics", {}).items()
              if m.get("mean") is not None}
    cols: list[str] = []
    for _, metric in METRICS.items():
        for col in metric.columns if metric.evaluate else ():
            prefix, _, suffix = col.partition("<dataset>")
            found = ([n for n in names if n.startswith(prefix) and n.endswith(suffix)]
                     if "<dataset>" in col else [col])
            cols += [n for n in found if n in valued and n not in cols]
    return cols


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text comparison table (one line per pipeline x sampler x steps); its metric
    columns come from the registry (:func:`metric_columns`)."""
    mcols = metric_columns(rows)
    cols = ["pipeline", "sampler", "steps", "NFE", "N", *mcols, "ms/NFE"]
    lines = [cols]
    for r in rows:
        if r.get("status") not in (None, "ok"):
            lines.append([r["pipeline"], "-", "-", "-", "-", f"{r['status']}: {r.get('reason')}"]
                         + [""] * (len(cols) - 6))
            continue
        m = r["metrics"]
        lines.append([r["pipeline"], r["sampler"] + (" (ref)" if r["reference"] else ""),
                      str(r["steps"]), str(r["nfe"]), str(r["n"]),
                      *[fmt_metric(m.get(c)) for c in mcols], fmt_metric(r["ms_per_nfe"])])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(cols))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
                      for row in lines)
    return "\n".join([table, *settings_notes(rows), *missing_notes(rows)])


def missing_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per metric that no row could compute, with its first reason."""
    out: dict[str, str] = {}
    valued = {n for r in rows for n, m in r.get("metrics", {}).items()
              if m.get("mean") is not None}
    for r in rows:
        for n, m in r.get("metrics", {}).items():
            if n not in valued and n not in out:
                out[n] = f"{n}: {m.get('reason') or m.get('status')}"
    return list(out.values())


def settings_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per distinct sampling setting shared by the rows: N, seeds, clip, spacing."""
    seen: dict[tuple, list[str]] = {}
    for r in rows:
        if r.get("status") not in (None, "ok"):
            continue
        st = r.get("settings", {})
        key = (r.get("n"), tuple(r.get("seeds", ())), st.get("clip"), st.get("timestep_spacing"),
               st.get("prediction"))
        seen.setdefault(key, [])
        if r["pipeline"] not in seen[key]:
            seen[key].append(r["pipeline"])
    return [f"{', '.join(p)}: N={n} per row, seeds {list(seeds)}, clip policy {clip}, "
            f"timestep spacing {spacing}, prediction {pred}; full scheduler configs in each "
            f"run's metrics.json" for (n, seeds, clip, spacing, pred), p in seen.items()]


def fmt_metric(m: dict | None) -> str:
    """``1.234 +- 0.056`` / ``1.234`` / ``unavailable`` / ``-``."""
    if not m:
        return "-"
    if m.get("mean") is None:
        return m.get("status") or "-"
    s = f"{m['mean']:.4g}"
    return s + (f" +- {m['ci95']:.2g}" if m.get("ci95") is not None else "")


def convergence_rows(run: RunDir) -> list[dict]:
    return (best_eval(run)[1] or {}).get("convergence") or []


def convergence_table(runs: list[RunDir]) -> tuple[list[list[str]], str] | None:
    """(one row per run x snapshot, the FD metric's name); None without convergence data."""
    pts = [(run, p) for run in runs for p in convergence_rows(run)]
    names = sorted({k for _, p in pts for k in p if k.startswith("FD-")})
    if not pts or not names:
        return None
    metric = names[0]
    rows = [["pipeline", "step", metric, "sampler", "steps", "N", "seed", "clip"]]
    rows += [[run.name, str(p["step"]), num(p.get(metric)), p["sampler"], str(p["steps"]),
              str(p["n"]), str(p["seed"]), str(p["clip"])] for run, p in pts]
    return rows, metric


def band_rows(run: RunDir) -> list[dict]:
    return [r for r in (best_eval(run)[1] or {}).get("results", []) if r.get("band_error")]


def edge_labels(e: list[float]) -> list[str]:
    return [f"{a:.3g}-{b:.3g}" for a, b in zip(e[:-1], e[1:])]


def band_labels(stats: dict) -> list[str]:
    e = stats.get("band_edges") or [i / (2 * len(stats["band_shares"]))
                                    for i in range(len(stats["band_shares"]) + 1)]
    return [f"{a:.3g}-{b:.3g}" for a, b in zip(e[:-1], e[1:])]


# ---- tables ---------------------------------------------------------------------------------
def runs_table(runs: list[RunDir]) -> list[list[str]]:
    rows = [["pipeline", "hash", "status", "steps", "loss_drop", "steps/s", "params",
             "FLOPs/sample", "budget"]]
    for r in runs:
        st, tr = r.status(), r.metrics().get("train", {})
        budget, ev = best_eval(r)
        speed = (ev or {}).get("speed", {})
        status = st.get("status", "?") + (f" ({st['reason']})" if st.get("reason") else "")
        rows.append([r.name, r.hash[:12], status, str(tr.get("steps", "-")),
                     num(tr.get("loss_drop")), num(tr.get("steps_per_second")),
                     str(speed.get("params", tr.get("params", "-"))),
                     str(speed.get("flops_per_sample") or "-"), budget or "-"])
    return rows


def results_table(runs: list[RunDir], metric: str | None = None) -> list[list[str]]:
    """One row per pipeline x sampler x steps; metric columns come from the metric registry
    (:func:`metric_columns`), as in ``evaluate``'s own table."""
    results = [r for run in runs for r in (best_eval(run)[1] or {}).get("results", [])]
    cols = metric_columns(results)
    rows = [["pipeline", "sampler", "steps", "NFE", "N", "seeds", *cols, "ms/NFE"]]
    for r in results:
        m = r["metrics"]
        rows.append([r["pipeline"], r["sampler"] + (" (ref)" if r.get("reference") else ""),
                     str(r["steps"]), str(r["nfe"]), str(r["n"]),
                     ",".join(map(str, r["seeds"])), *[fmt_metric(m.get(c)) for c in cols],
                     fmt_metric(r.get("ms_per_nfe"))])
    return rows


def band_error_table(runs: list[RunDir]) -> list[list[str]] | None:
    """One row per pipeline x sampler x steps: the signed log10 energy ratio in each band
    and the band it gets most wrong; None when no run has per-band errors. A band that
    holds no frequency at the run's image size (DC removed) reads "—", never +0.00."""
    from evaluator.report.compare import empty_bands

    rows = [(run, r) for run in runs for r in band_rows(run)]
    if not rows:
        return None
    labels = edge_labels(rows[0][1]["band_error"]["band_edges"])
    out = [["pipeline", "sampler", "steps", "N", "seeds", *labels, "worst band"]]
    for run, r in rows:
        be = r["band_error"]
        size = (run.spec_dict().get("image") or {}).get("size")
        empty = empty_bands(size, len(be["log10_ratio"])) if size else \
            [False] * len(be["log10_ratio"])
        live = [i for i in range(len(be["abs_error"])) if not empty[i]] or [0]
        worst = max(live, key=lambda i: be["abs_error"][i])
        cells = ["—" if e else f"{v:+.2f}" for v, e in zip(be["log10_ratio"], empty)]
        if len(cells) != len(labels):  # another band count: shown but not aligned
            cells = (cells + [""] * len(labels))[: len(labels)]
        out.append([r["pipeline"], r["sampler"], str(r["steps"]), str(be["n"]),
                    ",".join(map(str, be["seeds"])), *cells,
                    f"{edge_labels(be['band_edges'])[worst]} ({be['log10_ratio'][worst]:+.2f})"])
    return out


BAND_ERROR_NOTE = ("Per-band error: log10 of the samples' mean energy per image in each "
                   "radial band over the data's (0 = matches; +1 = ten times too much energy, "
                   "e.g. noise left in; -1 = ten times too little, e.g. over-smoothed). "
                   "Band edges in cycles/pixel; per-image mean removed; — marks a band "
                   "that holds no frequency at this image size.")


def unavailable_notes(runs: list[RunDir]) -> list[str]:
    notes = set()
    for run in runs:
        for row in (best_eval(run)[1] or {}).get("results", []):
            for name, m in row["metrics"].items():
                if m.get("status") != "ok" and m.get("reason"):
                    notes.add(f"{name}: {m['reason']}")
    return sorted(notes)


def stability_notes(runs: list[RunDir]) -> list[str]:
    """One line per stability warning training recorded (``metrics.json``, train section)."""
    return [f"{run.name} ({run.hash[:8]}): {w['message']}" for run in runs
            for w in run.metrics().get("train", {}).get("stability", {}).get("warnings", [])]


def num(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else "-"


def md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    return "\n".join(out)


def html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
