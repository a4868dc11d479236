"""Train/evaluate tab: submit background jobs (one at a time per device), see the queue,
live progress and loss curve, cancel (the run stays resumable). A job is checked before
it is queued (:func:`evaluator.pipeline.job_check.check_job`): every problem of every spec with its
overrides is shown at once, and what the budget caps is said. An interrupted job (the app stopped while it ran) can be resumed."""
from __future__ import annotations

from typing import Any

import gradio as gr

from app.gui import figures
from app.gui.common import Context, ui_errors

QUEUE_COLUMNS = ["id", "state", "device", "phase", "step", "total", "loss", "steps_per_s",
                 "run folder", "message"]


def queue_table(jobs: list[dict]) -> dict[str, Any]:
    """The queue; a job that trained nothing (its spec already finished) shows the run's
    own step, not 0."""
    from evaluator.pipeline.job_check import run_step

    rows = []
    for j in jobs:
        step, total = j["step"], j["total"]
        if j["runs"] and not step and j["state"] == "finished":
            step, total = run_step(j["runs"][-1])
        rows.append([j["id"], j["state"], j["device"], j["phase"], step, total,
                     round(j["loss"], 5) if j["loss"] is not None else "",
                     round(j["steps_per_s"], 2) if j["steps_per_s"] else "",
                     ", ".join(j["runs"]), j["message"]])
    return {"headers": QUEUE_COLUMNS, "data": rows}


def build(ctx: Context) -> dict[str, Any]:
    from app.gui.side_by_side import LimitedNumber
    from evaluator.data.datasets import DATASETS

    specs = ctx.spec_choices()
    with gr.Row():
        pick = gr.Dropdown(choices=specs, multiselect=True, label="specs", scale=4,
                           allow_custom_value=True, elem_id="train-specs")
        dataset = gr.Dropdown(choices=["(spec's)", *DATASETS.names()], value="(spec's)",
                              label="dataset")
        budget = gr.Radio(choices=["quick", "full"], value="quick", label="budget")
        device = gr.Dropdown(choices=["cpu", "cuda", "auto"], value=ctx.device,
                             label="device")
        evaluate = gr.Checkbox(value=True, label="evaluate after training")
    with gr.Row():
        steps = LimitedNumber(value=0, precision=0, minimum=0, step=1, scale=1,
                              label="train steps (0: the spec's)", elem_id="train-steps")
        overrides = gr.Textbox(label="overrides (PATH=VALUE, one per line)", lines=2, scale=4)
    with gr.Row():
        submit = gr.Button("start job", variant="primary")
        job_id = gr.Textbox(label="job id", scale=1)
        cancel = gr.Button("cancel job")
        resume = gr.Button("resume job")
    message = gr.Markdown("", elem_id="train-message")
    jobs = gr.Dataframe(headers=QUEUE_COLUMNS, label="queue", interactive=False, wrap=True)
    curve = gr.Plot(label="loss (selected or latest job)")
    refresh = gr.Button("refresh queue")
    timer = gr.Timer(1.0, active=False)  # polls only while a job is queued or running

    @ui_errors
    def do_submit(paths, ds, b, dev, ev, ov, n_steps=None):
        from evaluator.report.compare import Limit, check_ints
        from evaluator.pipeline.job_check import check_job

        lines = [ln.strip() for ln in (ov or "").splitlines() if ln.strip()]
        problems = []
        if n_steps not in (None, "", 0):
            problems = check_ints({"train steps": n_steps},
                                  (Limit("train steps", 1, 10_000_000),))
            if not problems:
                lines.append(f"train.steps={int(float(n_steps))}")
        if ds and ds != "(spec's)":
            lines.append(f"train.dataset={ds}")
        more, notes = check_job(list(paths or []), lines, b, ctx.root)
        problems += more
        if problems:
            return ("**not queued**, fix first:\n" + "\n".join(f"- `{p}`" for p in problems),
                    gr.skip(), gr.skip())
        job = ctx.jobs.submit(list(paths or []), budget=b, device=dev, evaluate=bool(ev),
                              overrides=lines)
        return (f"queued `{job.id}` on {job.device}" + "".join(f"\n- {n}" for n in notes),
                job.id, gr.Timer(active=True))

    @ui_errors
    def do_cancel(jid):
        if not (jid or "").strip():
            raise gr.Error("give a job id")
        ok = ctx.jobs.cancel(jid.strip())
        return (f"cancelling `{jid}`: the run stops after this step and stays resumable"
                if ok else f"`{jid}` is not queued or running")

    @ui_errors
    def do_resume(jid):
        # an interrupted job (its app stopped) or a cancelled one continues from its
        # runs' last checkpoints
        if not (jid or "").strip():
            raise gr.Error("give a job id")
        ok = ctx.jobs.resume(jid.strip())
        return (f"resuming `{jid}`" if ok else
                f"`{jid}` is not interrupted or cancelled (or another app instance runs it)")

    @ui_errors
    def do_poll(jid):
        snap = ctx.jobs.snapshot()  # the journal lists an earlier app's jobs too
        sel = next((j for j in snap if j["id"] == (jid or "").strip()), None)
        sel = sel or (snap[-1] if snap else None)
        fig = (figures.loss_curve(sel["losses"], f"{sel['id']}: {sel['phase']}")
               if sel and sel["losses"] else figures.empty("no job yet"))
        busy = any(j["state"] in ("queued", "running") for j in snap)
        return queue_table(snap), fig, gr.Timer(active=busy)

    submit.click(do_submit, [pick, dataset, budget, device, evaluate, overrides, steps],
                 [message, job_id, timer], api_name="submit_job")
    cancel.click(do_cancel, job_id, message, api_name="cancel_job")
    resume.click(do_resume, job_id, message, api_name="resume_job").then(
        do_poll, job_id, [jobs, curve, timer], api_name=False)
    timer.tick(do_poll, job_id, [jobs, curve, timer], api_name="jobs",
               show_progress="hidden")
    refresh.click(do_poll, job_id, [jobs, curve, timer], api_name=False)
    return {"pick": pick}


