"""Study tab: the research-question studies stored under the results root and the
workspace, and for the chosen one, per question, what ``archsearch study report`` writes:
the question, the design line, the report's own figures, the tables with CIs and the
computed answer.

Nothing trains or samples here: the numbers come from the study's storage and run folders
(:func:`evaluator.study.collect.collect`) and the text and figures from
:mod:`evaluator.study.report` and :mod:`evaluator.study.figures`, so the app and the report
cannot disagree. A study still running shows what has finished and how many trials are
pending.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from app.gui.common import Context

MAX_SECTIONS = 6   # questions shown (the shipped study has four)
MAX_FIGS = 6       # figures per question (Q3 draws one per factor x pipeline)
HINT = ("**no study** under {roots}: run one with `archsearch study run "
        "examples/study/research_questions.yaml --budget cpu --out {root}`, then pick it here")


@dataclass
class StudyView:
    """What the tab shows: a header line and, per question, Markdown and figures."""

    header: str
    sections: list[dict[str, Any]] = field(default_factory=list)


def find_studies(root: Path, workspace: Path) -> list[tuple[str, str]]:
    """(label, journal path) of every study and budget stored as
    ``<root>/studies/NAME/BUDGET/journal.log`` (the engine's default storage), under the
    results root and the workspace. Only paths are read, so polling stays cheap."""
    out = []
    for base in dict.fromkeys([Path(root), Path(workspace)]):
        where = "" if base == Path(root) else " · workspace"
        for p in sorted(base.glob("studies/*/*/journal.log")):
            out.append((f"{p.parent.parent.name} ({p.parent.name}){where}", str(p)))
    return out


def load_view(journal: str | Path) -> StudyView:
    """The study stored in ``journal``: its report sections and a header with the trial
    counts. A study that cannot be read gives a one-line message, not an exception."""
    from archspec.errors import UserError

    try:
        return _load(Path(journal))
    except UserError as e:
        return StudyView(f"**could not read** `{journal}`: " + "; ".join(e.lines()))
    except Exception as e:  # noqa: BLE001 - a damaged store is shown, never a traceback
        return StudyView(f"**could not read** `{journal}`: {type(e).__name__}: {e}")


def _load(journal: Path) -> StudyView:
    from evaluator.study import engine
    from evaluator.study import figures as F
    from evaluator.study.collect import collect
    from evaluator.study.report import section_body_md, section_head_md, sections
    from evaluator.sweeps.study import make_storage

    if not journal.is_file():
        return StudyView(f"**no study journal** at `{journal}` (deleted?)")
    storage = make_storage(str(journal))
    name = engine.registry_name(journal.parent.parent.name, journal.parent.name)
    plan, tables = collect(storage, name)
    secs = []
    for s in sections(plan, tables)[:MAX_SECTIONS]:
        figs = [f for f in F.figures(s, s["numbers"].get("metric", "FD")) if has_data(f)]
        secs.append({"key": s["key"], "verdict": s["verdict"], "answer": s["answer"],
                     "head": section_head_md(s), "body": section_body_md(s),
                     "figures": figs[:MAX_FIGS], "more_figures": max(0, len(figs) - MAX_FIGS)})
    return StudyView(header(plan, engine.status(storage, name), journal), secs)


def header(plan: dict[str, Any], rows: list[dict], journal: Path) -> str:
    """One line: the study, its trial counts (pending ones named), and the report command."""
    total = sum(r["total"] for r in rows)
    done, failed = sum(r["done"] for r in rows), sum(r["failed"] for r in rows)
    running = sum(r["running"] for r in rows)
    waiting = sum(r["waiting"] + r["not_enqueued"] for r in rows)
    pending = running + waiting
    name = plan["study"]["study"]["name"]
    state = (f"**{pending} of {total} trials pending** ({running} running, {waiting} "
             "waiting): the sections below show the finished ones only"
             if pending else f"all {total} trials ended")
    return (f"study `{name}`, budget `{plan['budget']}`: {done}/{total} finished, "
            f"{failed} failed; {state}. Commit {plan.get('commit') or 'unknown'}. "
            f"Read from `{journal}` (nothing is trained here); the same report as files: "
            f"`archsearch study report STUDY_FILE --budget {plan['budget']} --out {journal.parents[3]}`")


def has_data(fig: Any) -> bool:
    """Whether a figure draws anything (a trace with points or cells), so that no empty
    frame is shown."""
    for t in fig.data:
        for key in ("y", "z", "x"):
            v = getattr(t, key, None)
            if v is not None and len(v) > 0:
                return True
    return False


def outputs(view: StudyView) -> list[Any]:
    """Gradio updates for the header and every section slot (head, figures, body); unused
    slots are hidden."""
    out: list[Any] = [view.header]
    for i in range(MAX_SECTIONS):
        s = view.sections[i] if i < len(view.sections) else None
        out.append(gr.update(value=s["head"] if s else "", visible=s is not None))
        figs = s["figures"] if s else []
        for k in range(MAX_FIGS):
            f = figs[k] if k < len(figs) else None
            out.append(gr.update(value=f, visible=f is not None))
        body = (s["body"] + (f"\n\n({s['more_figures']} more figures in `study.html`)"
                             if s["more_figures"] else "")) if s else ""
        out.append(gr.update(value=body, visible=s is not None))
    return out


def hint(ctx: Context) -> str:
    roots = " or ".join(f"`{p}/studies/`" for p in dict.fromkeys([ctx.root, ctx.workspace]))
    return HINT.format(roots=roots, root=ctx.root)


def show(ctx: Context, journal: str | None) -> list[Any]:
    """The tab's outputs for the chosen journal (the hint when none is chosen)."""
    return outputs(load_view(journal) if journal else StudyView(hint(ctx)))


def build(ctx: Context) -> dict[str, Any]:
    """The tab's layout and wiring; returns the study picker for :mod:`app.gui.lists`."""
    with gr.Row():
        pick = gr.Dropdown(choices=[], value=None, label="study (results root and workspace)",
                           scale=4, elem_id="study-pick")
        reload = gr.Button("reload", scale=1)
    head = gr.Markdown(hint(ctx), elem_id="study-header")
    slots: list[Any] = []
    for i in range(MAX_SECTIONS):
        slots.append(gr.Markdown("", visible=False, elem_id=f"study-q{i}-head"))
        for k in range(MAX_FIGS):
            slots.append(gr.Plot(visible=False, show_label=False,
                                 elem_id=f"study-q{i}-fig{k}"))
        slots.append(gr.Markdown("", visible=False, elem_id=f"study-q{i}-body"))

    def handler(journal):
        return show(ctx, journal)

    pick.change(handler, pick, [head, *slots], api_name="study")
    reload.click(handler, pick, [head, *slots], api_name=False)
    return {"pick": pick}
