"""What every tab shares: the app context (results root, workspace, caches, job queue) and
turning errors into UI messages."""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "specs"


@dataclass
class Context:
    """Shared state of one app instance.

    Attributes:
        root: results root (runs under ``root/runs``); workspace: where specs are saved.
        models: loaded (model, spec) per run path, reused by side-by-side sampling.
        jobs: the background job queue (created on first use).
    """

    root: Path
    workspace: Path
    device: str = "cpu"
    models: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _jobs: Any = None

    @property
    def jobs(self):
        if self._jobs is None:
            from evaluator.pipeline.jobs import JobQueue
            self._jobs = JobQueue(self.root)
        return self._jobs

    def run_choices(self) -> list[tuple[str, str]]:
        """(label, path) of every run: ``name/hash (status)``."""
        from evaluator.store.rundir import list_runs

        out = []
        for r in list_runs(self.root):
            st = r.status().get("status", "?")
            out.append((f"{r.name}/{r.hash} ({st})", str(r.path)))
        return out

    def spec_choices(self) -> list[tuple[str, str]]:
        """(label, path) of the example specs and the workspace's specs."""
        from evaluator.store.workspace import list_specs

        out = []
        for p in list_specs(EXAMPLES, self.workspace):
            where = "examples" if p.parent == EXAMPLES else "workspace"
            out.append((f"{where}/{p.name}", str(p)))
        return out


def ui_errors(fn: Callable) -> Callable:
    """Run a handler; a bad-input error or a crash becomes a ``gr.Error`` message in the UI
    (one line per problem) and the app keeps running."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from archspec.errors import UserError

        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as e:
            raise gr.Error("\n".join(e.lines()), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - shown in the UI, logged by gradio
            raise gr.Error(f"{type(e).__name__}: {e}") from e

    return wrapper
