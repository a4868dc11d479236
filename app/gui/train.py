"""Train/evaluate tab: submit background jobs (one at a time per device), see the queue,
live progress and loss curve, cancel (the run stays resumable), resume an interrupted job."""
from __future__ import annotations

from typing import Any

import gradio as gr

from app.gui import figures
from app.gui.common import Context, ui_errors

QUEUE_COLUMNS = ["id", "state", "device", "phase", "step", "total", "loss", "steps_per_s",
                 "message"]


def queue_table(jobs: list[dict]) -> dict[str, Any]:
    rows = []
    for j in jobs:
        rows.append([j["id"], j["state"], j["device"], j["phase"], j["step"], j["total"],
                     round(j["loss"], 5) if j["loss"] is not None else "",
                     round(j["steps_per_s"], 2) if j["steps_per_s"] else "", j["message"]])
    return {"headers": QUEUE_COLUMNS, "data": rows}


def build(ctx: Context) -> None:
    specs = ctx.spec_choices()
    with gr.Row():
        pick = gr.Dropdown(choices=specs, multiselect=True, label="specs", scale=4,
                           allow_custom_value=True)
        from evaluator.data.datasets import DATASETS

        dataset = gr.Dropdown(choices=["(spec's)", *DATASETS.names()], value="(spec's)",
                              label="dataset")
        budget = gr.Radio(choices=["quick", "full"], value="quick", label="budget")
        device = gr.Dropdown(choices=["cpu", "cuda", "auto"], value=ctx.device,
                             label="device")
        evaluate = gr.Checkbox(value=True, label="evaluate after training")
    overrides = gr.Textbox(label="overrides (PATH=VALUE, one per line)", lines=2)
    with gr.Row():
        submit = gr.Button("start job", variant="primary")
        job_id = gr.Textbox(label="job id", scale=1)
        cancel = gr.Button("cancel job")
        resume = gr.Button("resume job")
    message = gr.Markdown("")
    jobs = gr.Dataframe(headers=QUEUE_COLUMNS, label="queue", interactive=False)
    curve = gr.Plot(label="loss (selected or latest job)")
    refresh = gr.Button("refresh queue")
    timer = gr.Timer(1.0, active=False)  # polls only while a job is queued or running

    @ui_errors
    def do_submit(paths, ds, b, dev, ev, ov):
        lines = [ln.strip() for ln in (ov or "").splitlines() if ln.strip()]
        if ds and ds != "(spec's)":
            lines.append(f"train.dataset={ds}")
        job = ctx.jobs.submit(list(paths or []), budget=b, device=dev, evaluate=bool(ev),
                              overrides=lines)
        return f"queued `{job.id}` on {job.device}", job.id, gr.Timer(active=True)

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

    submit.click(do_submit, [pick, dataset, budget, device, evaluate, overrides],
                 [message, job_id, timer], api_name="submit_job")
    cancel.click(do_cancel, job_id, message, api_name="cancel_job")
    resume.click(do_resume, job_id, message, api_name="resume_job").then(
        do_poll, job_id, [jobs, curve, timer], api_name=False)
    timer.tick(do_poll, job_id, [jobs, curve, timer], api_name="jobs",
               show_progress="hidden")
    refresh.click(do_poll, job_id, [jobs, curve, timer], api_name=False)
