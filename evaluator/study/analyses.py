"""One analysis per research question: numbers from the study's tables, then one answer
sentence computed from them (yes / no / inconclusive when the intervals overlap).

Each ``qN`` function takes the tables (:mod:`evaluator.study.collect`) already restricted
to the question's experiments and its ``settings``, and returns a dict with ``numbers``
(plain data for tables and figures), ``answer`` (one sentence), ``verdict`` and
``comparisons`` (how many intervals were compared, for the multiple-comparisons flag).
"""
from __future__ import annotations

from typing import Any

from evaluator.study import stats as S


# ---- Q1 -------------------------------------------------------------------------------
def q1(t: dict[str, list[dict]], st: dict[str, Any]) -> dict[str, Any]:
    base, ref_nfe = st.get("baseline", "spatial"), int(st.get("baseline_nfe", 50))
    rows = [r for r in t["evals"] if not r["reference"] and r["fd"] is not None]
    curves = S.summarise(rows, ("pipeline", "sampler", "nfe"), "fd")
    refs = S.summarise([r for r in t["evals"] if r["reference"]], ("pipeline", "nfe"), "fd")
    samplers = sorted({r["sampler"] for r in rows})
    others = sorted({r["pipeline"] for r in rows} - {base})
    match, wall = [], []
    for smp in samplers:
        b = {r["seed"]: r["fd"] for r in rows
             if (r["pipeline"], r["sampler"], r["nfe"]) == (base, smp, ref_nfe)}
        for p in others:
            c: dict[int, dict[int, float]] = {}
            for r in rows:
                if (r["pipeline"], r["sampler"]) == (p, smp):
                    c.setdefault(r["seed"], {})[r["nfe"]] = r["fd"]
            if b and c:
                match.append({"pipeline": p, "sampler": smp, **S.nfe_to_match(c, b)})
        wall += equal_time(rows, base, smp, ref_nfe)
    return {"numbers": {"curves": curves, "reference": refs, "match": match, "wall": wall,
                        "baseline": base, "baseline_nfe": ref_nfe},
            **q1_answer(match, base, ref_nfe)}


def equal_time(rows: list[dict], base: str, sampler: str, ref_nfe: int) -> list[dict]:
    """FD of each pipeline at the sampling time the baseline spends on ``ref_nfe`` steps
    (ms per NFE measured per run; FD interpolated on log NFE per seed)."""
    bt = [r["ms_per_nfe"] * ref_nfe for r in rows if (r["pipeline"], r["sampler"], r["nfe"])
          == (base, sampler, ref_nfe) and r["ms_per_nfe"]]
    if not bt:
        return []
    budget_ms = sum(bt) / len(bt)
    out = []
    for p in sorted({r["pipeline"] for r in rows}):
        per_seed = S.group([r for r in rows if (r["pipeline"], r["sampler"]) == (p, sampler)],
                           ("seed",))
        vals, nfes = [], []
        for rs in per_seed.values():
            ms = [r["ms_per_nfe"] for r in rs if r["ms_per_nfe"]]
            if not ms:
                continue
            nfe = budget_ms / (sum(ms) / len(ms))
            nfes.append(nfe)
            vals.append(S.interp_log([r["nfe"] for r in rs], [r["fd"] for r in rs], nfe))
        out.append({"pipeline": p, "sampler": sampler, "budget_ms": budget_ms,
                    "nfe": sum(nfes) / len(nfes) if nfes else None,
                    "outside": sum(v is None for v in vals), **S.mean_ci(vals)})
    return out


def q1_verdict(m: dict[str, Any], ref_nfe: int) -> str:
    if m["nfe"] is None:
        return "not reached"
    if m["high"] is not None and m["high"] < ref_nfe:
        return "yes"
    if m["low"] is not None and m["low"] >= ref_nfe:
        return "no"
    return "inconclusive"


def _nfe_text(m: dict[str, Any]) -> str:
    if m["nfe"] is None:
        return f"not reached within {m['max_nfe']}"
    if m["nfe"] == m.get("min_nfe"):  # already there at the smallest NFE measured
        return f"<= {m['nfe']:.3g} (reached at the smallest NFE measured)"
    lo = "-" if m["low"] is None else f"{m['low']:.3g}"
    hi = f"> {m['max_nfe']}" if m["high"] is None else f"{m['high']:.3g}"
    return f"{m['nfe']:.3g} [{lo}, {hi}]"


def q1_answer(match: list[dict], base: str, ref_nfe: int) -> dict[str, Any]:
    if not match:
        return {"verdict": "inconclusive", "comparisons": 0,
                "answer": "Inconclusive: no pipeline has results to compare with the baseline."}
    for m in match:
        m["verdict"] = q1_verdict(m, ref_nfe)
    yes = [m for m in match if m["verdict"] == "yes"]
    if yes:
        best = min(yes, key=lambda m: m["nfe"])
        return {"verdict": "yes", "comparisons": len(match), "answer": (
            f"Yes: {best['pipeline']} reaches the {base} baseline's {ref_nfe}-NFE quality "
            f"with {best['sampler']} at NFE {_nfe_text(best)} (95% bootstrap CI below "
            f"{ref_nfe}).")}
    if all(m["verdict"] in ("no", "not reached") for m in match):
        worst = ", ".join(f"{m['pipeline']}/{m['sampler']}: {_nfe_text(m)}" for m in match)
        return {"verdict": "no", "comparisons": len(match), "answer": (
            f"No: no frequency-native pipeline reaches the {base} baseline's {ref_nfe}-NFE "
            f"quality with fewer steps ({worst}).")}
    open_ = [m for m in match if m["verdict"] == "inconclusive"]
    return {"verdict": "inconclusive", "comparisons": len(match), "answer": (
        f"Inconclusive: the NFE-to-match CI includes {ref_nfe} for "
        + ", ".join(f"{m['pipeline']}/{m['sampler']} ({_nfe_text(m)})" for m in open_)
        + "; none is below it.")}


# ---- Q2 -------------------------------------------------------------------------------
def per_run(t: dict[str, list[dict]], st: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per finished run: final FD, steps to the threshold, sampler spread at the
    fixed NFE, clip change, spikes and warnings (design levels kept)."""
    nfe = int(st.get("nfe", 20))
    sampler = st.get("sampler", "dpmsolver++")
    key = ("experiment", "pipeline", "seed", *sorted({k for r in t["runs"] for k in r
                                                       if k.startswith("f:")}))
    ev, cv, cl = (S.group(t[n], key) if t[n] else {} for n in ("evals", "convergence", "clip"))
    thr = st.get("threshold")
    out = []
    for r in t["runs"]:
        if r["state"] != "COMPLETE":
            continue
        k = tuple(r.get(x) for x in key)
        fds = {(e["sampler"], e["nfe"]): e["fd"] for e in ev.get(k, []) if e["fd"] is not None}
        at_nfe = [v for (s, n), v in fds.items() if n == nfe]
        clip = [c["fd"] for c in cl.get(k, []) if c["nfe"] == nfe and c["sampler"] == sampler]
        curve = sorted((c["step"], c["fd"]) for c in cv.get(k, []) if c["fd"] is not None)
        out.append({**r, "fd": fds.get((sampler, nfe)),
                    "sampler_spread": max(at_nfe) - min(at_nfe) if len(at_nfe) > 1 else None,
                    "clip_change": max(clip) - min(clip) if len(clip) > 1 else None,
                    "worst": max([*at_nfe, *[c["fd"] for c in cl.get(k, [])]], default=None),
                    "curve": curve,
                    "to_threshold": next((s for s, v in curve if thr is not None and v <= thr),
                                         None)})
    return out


def threshold(t: dict[str, list[dict]], st: dict[str, Any]) -> float | None:
    """The FD a run must reach: given, or the worst group's final mean (each group of the
    design then has a chance to reach it)."""
    if st.get("threshold") is not None:
        return float(st["threshold"])
    last: dict[tuple, float] = {}
    for r in t["convergence"]:
        k = (r["pipeline"], r["seed"], *sorted((a, b) for a, b in r.items() if a[:2] == "f:"))
        if r["fd"] is not None and r["step"] >= last.get(k, (-1, 0))[0]:
            last[k] = (r["step"], r["fd"])
    return max(v for _, v in last.values()) if last else None


def effects(runs: list[dict], factor: str, value: str) -> list[dict[str, Any]]:
    rows = [r for r in runs if f"f:{factor}" in r]
    return [{"factor": factor, "measure": value, **s}
            for s in S.summarise([{**r, "level": r[f"f:{factor}"]} for r in rows],
                                 ("level",), value)]


def divergence(runs: list[dict], factor: str) -> list[dict[str, Any]]:
    out = []
    for (lv,), rs in sorted(S.group([r for r in runs if f"f:{factor}" in r],
                                    (f"f:{factor}",)).items()):
        k = sum(bool(r["diverged"]) for r in rs)
        out.append({"factor": factor, "level": lv, "diverged": k, "runs": len(rs),
                    "rate": k / len(rs), "wilson": S.wilson(k, len(rs))})
    return out


def q2(t: dict[str, list[dict]], st: dict[str, Any]) -> dict[str, Any]:
    st = {**st, "threshold": threshold(t, st)}
    runs = per_run(t, st)
    factors = [f for f in st.get("factors", ["conv", "attention"])
               if any(f"f:{f}" in r for r in runs)]
    measures = ("fd", "to_threshold", "spikes", "warnings", "sampler_spread", "clip_change")
    eff = [e for f in factors for m in measures for e in effects(runs, f, m)]
    div_f = list(dict.fromkeys([*factors, st.get("lr_factor", "lr")]))
    div = [d for f in div_f for d in divergence(t["runs"], f)]
    conv = S.summarise([{**c, "level": "/".join(str(c.get(f"f:{f}")) for f in factors)}
                        for c in t["convergence"]], ("level", "step"), "fd")
    sentences, n = [], 0
    for f in factors:
        lv = [e for e in eff if e["factor"] == f]
        levels = sorted({e["level"] for e in lv})
        if len(levels) != 2:
            continue
        a, b = levels
        parts = []
        for m, what in (("to_threshold", "steps to threshold"), ("fd", "final FD"),
                        ("spikes", "gradient spikes")):
            ea = next((e for e in lv if e["measure"] == m and e["level"] == a), {})
            eb = next((e for e in lv if e["measure"] == m and e["level"] == b), {})
            c = S.compare(S.interval(ea), S.interval(eb))
            n += 1
            parts.append(f"{what} {S.fmt(ea)} vs {S.fmt(eb)} ({_word(c, a, b)})")
        sentences.append(f"{f} {a} vs {b}: " + "; ".join(parts))
    decided = [s for s in sentences if "inconclusive" not in s]
    verdict = "inconclusive" if not decided or len(decided) < len(sentences) else "separated"
    answer = (("Inconclusive where marked: " if verdict == "inconclusive"
               else "Every effect is separated: ")
              + ". ".join(sentences) + "." if sentences
              else "Inconclusive: the design has no two-level factor with finished runs.")
    return {"numbers": {"effects": eff, "divergence": div, "convergence": conv,
                        "threshold": st["threshold"], "runs": runs, "factors": factors},
            "verdict": verdict, "answer": answer, "comparisons": n}


def _word(c: str, a: str, b: str) -> str:
    return {"better": f"{a} lower", "worse": f"{b} lower"}.get(c, "inconclusive")


# ---- Q3 -------------------------------------------------------------------------------
def q3(t: dict[str, list[dict]], st: dict[str, Any]) -> dict[str, Any]:
    strategies = [f for f in st.get("factors", ["weighting", "norm"])
                  if any(f"f:{f}" in r for r in t["band"])]
    heat, best, n, undecided = [], [], 0, 0
    for f in strategies:
        total = S.group([{**r, "level": r[f"f:{f}"]} for r in t["band"]],
                        ("pipeline", "level", "t_bin", "band"))
        for k, rs in total.items():
            heat.append(dict(zip(("pipeline", "level", "t_bin", "band"), k),
                             factor=f, **S.mean_ci(r["error"] for r in rs)))
        per_run = S.group([{**r, "level": r[f"f:{f}"]} for r in t["band"]],
                          ("pipeline", "level", "t_bin", "run"))
        summed = [{"pipeline": k[0], "level": k[1], "t_bin": k[2], "seed": rs[0]["seed"],
                   "error": sum(r["error"] for r in rs)} for k, rs in per_run.items()]
        for (p, tb), rs in sorted(S.group(summed, ("pipeline", "t_bin")).items()):
            lv = sorted(S.summarise(rs, ("level",), "error"), key=lambda s: s["mean"])
            if len(lv) < 2:
                continue
            c = S.compare(S.interval(lv[0]), S.interval(lv[1]))
            n += 1
            undecided += c != "better"
            best.append({"factor": f, "pipeline": p, "t_bin": tb, "best": lv[0]["level"],
                         "mean": lv[0]["mean"], "ci95": lv[0]["ci95"],
                         "runner_up": lv[1]["level"], "decided": c == "better"})
    fd = S.summarise([{**r, "level": "/".join(str(r.get(f"f:{f}")) for f in strategies)}
                      for r in t["evals"] if r["fd"] is not None and not r["reference"]],
                     ("pipeline", "level", "sampler", "nfe"), "fd")
    return {"numbers": {"heat": heat, "best": best, "fd": fd, "factors": strategies},
            **q3_answer(best, n, undecided)}


def q3_answer(best: list[dict], n: int, undecided: int) -> dict[str, Any]:
    if not best:
        return {"verdict": "inconclusive", "comparisons": 0,
                "answer": "Inconclusive: no per-timestep errors were measured."}
    parts = []
    for (f, p), rs in sorted(S.group(best, ("factor", "pipeline")).items()):
        runs_, cur = [], None
        for r in sorted(rs, key=lambda r: r["t_bin"]):
            name = r["best"] if r["decided"] else "inconclusive"
            if cur and cur[0] == name:
                cur[2] = r["t_bin"]
            else:
                cur = [name, r["t_bin"], r["t_bin"]]
                runs_.append(cur)
        parts.append(f"{p} ({f}): " + ", ".join(
            f"t-bins {a}-{b} {nm}" if a != b else f"t-bin {a} {nm}" for nm, a, b in runs_))
    decided = n - undecided
    verdict = "inconclusive" if not decided else "yes" if not undecided else "partly"
    lead = {"yes": "Lowest denoising error per timestep bin",
            "inconclusive": "Inconclusive in every bin (the best two overlap)",
            # each bin is its own 95% comparison: say how many separations chance gives
            "partly": f"Separated in {decided} of {n} bins only (about {0.05 * n:.1f} "
                      "expected by chance at 95% each, uncorrected); lowest denoising "
                      "error per timestep bin"}[verdict]
    return {"verdict": verdict, "comparisons": n,
            "answer": f"{lead}: " + "; ".join(parts) + f" ({undecided} of {n} bins "
                      "inconclusive)."}


# ---- Q4 -------------------------------------------------------------------------------
def q4(t: dict[str, list[dict]], st: dict[str, Any]) -> dict[str, Any]:
    lr_f = st.get("lr_factor", "lr")
    runs = per_run(t, st)
    out = {}
    for p in sorted({r["pipeline"] for r in t["runs"]}):
        mine = [r for r in runs if r["pipeline"] == p]
        by_lr = S.group([r for r in mine if r["fd"] is not None], (f"f:{lr_f}",))
        all_p = [r for r in t["runs"] if r["pipeline"] == p]
        k = sum(bool(r["diverged"]) for r in all_p)
        out[p] = {"lr_spread": _spread(by_lr), "ci_width": _ci_width(by_lr),
                  "worst": S.mean_ci(r["worst"] for r in mine),
                  "divergence": {"diverged": k, "runs": len(all_p),
                                 "rate": k / len(all_p) if all_p else None,
                                 "wilson": S.wilson(k, len(all_p))}}
    return {"numbers": {"robustness": out}, **q4_answer(out, st)}


def _spread(by_lr: dict[tuple, list[dict]]) -> dict[str, Any]:
    """max - min over learning rates of the mean FD, with a bootstrap over seeds."""
    fds = [[r["fd"] for r in rs] for rs in by_lr.values()]
    if len(fds) < 2:
        return {"mean": None, "interval": None}
    spread = max(sum(v) / len(v) for v in fds) - min(sum(v) / len(v) for v in fds)
    import random

    rng, reps = random.Random(S.BOOT_SEED), []
    for _ in range(S.BOOTSTRAP):
        means = [sum(x) / len(x) for x in ([rng.choice(v) for _ in v] for v in fds)]
        reps.append(max(means) - min(means))
    reps.sort()
    return {"mean": spread, "interval": (S.quantile(reps, 0.025), S.quantile(reps, 0.975))}


def _ci_width(by_lr: dict[tuple, list[dict]]) -> dict[str, Any]:
    widths = [2 * s["ci95"] for s in (S.mean_ci(r["fd"] for r in rs) for rs in by_lr.values())
              if s["ci95"] is not None]
    return {"mean": sum(widths) / len(widths) if widths else None, "interval": None}


def q4_answer(out: dict[str, dict], st: dict[str, Any]) -> dict[str, Any]:
    a, b = st.get("candidate", "hybrid"), st.get("against", "spectral")
    if a not in out or b not in out:
        return {"verdict": "inconclusive", "comparisons": 0,
                "answer": f"Inconclusive: {a} or {b} has no results."}
    words, parts = [], []
    for m, name in (("lr_spread", "FD spread over the lr grid"), ("worst", "worst-case FD"),
                    ("divergence", "divergence rate")):
        ia, ib = (_iv(out[x][m]) for x in (a, b))
        c = S.compare(ia, ib)
        words.append(c)
        parts.append(f"{name} {_num(out[a][m])} vs {_num(out[b][m])} ({c})")
    better, worse = words.count("better"), words.count("worse")
    verdict = ("yes" if better and not worse else "no" if worse and not better
               else "inconclusive")
    lead = {"yes": f"Yes: {a} is more robust than {b}",
            "no": f"No: {a} is less robust than {b}",
            "inconclusive": f"Inconclusive: {a} is not separated from {b}"}[verdict]
    return {"verdict": verdict, "comparisons": len(words),
            "answer": f"{lead} ({'; '.join(parts)}; {a} listed first)."}


def _iv(m: dict[str, Any]) -> tuple[float, float] | None:
    if "wilson" in m:
        return m["wilson"]
    if "interval" in m:
        return m["interval"]
    return S.interval(m)


def _num(m: dict[str, Any]) -> str:
    if "rate" in m:
        return "-" if m["rate"] is None else f"{m['diverged']}/{m['runs']}"
    if "interval" in m:
        iv = m["interval"]
        return ("-" if m["mean"] is None else f"{m['mean']:.3g}"
                + (f" [{iv[0]:.3g}, {iv[1]:.3g}]" if iv else ""))
    return S.fmt(m)


# ---- component ablations (examples/ablations as a study) -------------------------------
def ablation(t: dict[str, list[dict]], st: dict[str, Any]) -> dict[str, Any]:
    """FD per design level (mean +- CI over seeds) per experiment, pipeline and sampler
    setting; the answer names the best level of each and whether it is separated from
    the runner-up."""
    rows = [{**r, "level": ", ".join(f"{k[2:]}={v}" for k, v in sorted(r.items())
                                      if k.startswith("f:")) or "-"}
            for r in t["evals"] if r["fd"] is not None]
    table = S.summarise(rows, ("experiment", "pipeline", "sampler", "nfe", "level"), "fd")
    parts, n, undecided = [], 0, 0
    for k, rs in sorted(S.group(table, ("experiment", "pipeline", "sampler", "nfe")).items()):
        rs = sorted(rs, key=lambda r: r["mean"])
        if len(rs) < 2:
            continue
        c = S.compare(S.interval(rs[0]), S.interval(rs[1]))
        n, undecided = n + 1, undecided + (c != "better")
        parts.append(f"{k[0]}/{k[1]} ({k[2]} {k[3]}): {rs[0]['level']} {S.fmt(rs[0])}"
                     + ("" if c == "better" else f", not separated from {rs[1]['level']}"))
    verdict = "inconclusive" if undecided == n else "separated"
    answer = ("Lowest FD: " + "; ".join(parts) + "." if parts
              else "Inconclusive: fewer than two levels have results.")
    return {"numbers": {"table": table}, "verdict": verdict, "answer": answer,
            "comparisons": n}


ANALYSIS = {"q1_nfe": q1, "q2_stability": q2, "q3_weighting": q3, "q4_robustness": q4,
            "ablation": ablation}
