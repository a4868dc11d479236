"""The ``archsearch`` command.

Start-up matters: this module imports only the standard library. Each command imports
what it needs when it runs, so ``--help`` answers at once and ``validate`` pays for torch
(shape inference) but never for gradio, lpips, torch-fidelity or diffusers.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

# name -> (module, add_arguments function, run function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "validate": ("app.commands.spec", "add_validate", "run_validate",
                 "check spec files; one line per problem, exit 2 if any is invalid"),
    "schema": ("app.commands.spec", "add_schema", "run_schema",
               "print the spec JSON Schema (for editors)"),
    "show": ("app.commands.spec", "add_show", "run_show",
             "print the resolved spec and a table of nodes, shapes and parameters"),
    "blocks": ("app.commands.spec", "add_blocks", "run_blocks",
               "list registered blocks with their parameters and domains"),
    "profile": ("app.commands.profile", "add_profile", "run_profile",
                "parameters, FLOPs, step time and memory of a spec, or per-block ratios"),
    "train": ("app.commands.runs", "add_train_args", "run_train", "train a spec's model"),
    "sample": ("app.commands.runs", "add_sample_args", "run_sample",
               "sample from a trained run with a chosen sampler"),
    "evaluate": ("app.commands.runs", "add_evaluate_args", "run_evaluate",
                 "train and evaluate specs; print a comparison table"),
    "report": ("app.commands.runs", "add_report_args", "run_report",
               "write Markdown + HTML reports for a results folder"),
    "rehash": ("app.commands.runs", "add_rehash_args", "run_rehash",
               "re-key stored runs whose spec hash changed with the canonical form"),
    "diff": ("app.commands.diff", "add_diff", "run_diff",
             "what changed between two specs (files or run folders): nodes, parameters"),
    "app": ("app.commands.gui", "add_app", "run_app",
            "start the Gradio app (spec editor, side by side, results) on 127.0.0.1"),
    "sweep": ("app.commands.sweep", "add_sweep", "run_sweep",
              "Taguchi / grid / random / TPE sweeps on Optuna: validate, run, worker, "
              "status, analyze"),
    "study": ("app.commands.study", "add_study", "run_study",
              "research-question studies on the sweep engine: run, worker, status, report"),
}


def _load(module: str, name: str) -> Callable:
    import importlib

    return getattr(importlib.import_module(module), name)


def _parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archsearch",
        description="Declarative architecture search for spatial and spectral diffusion models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add, _run, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:  # only the chosen command's module is imported
            _load(module, add)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    command = command if command in COMMANDS else None
    args = _parser(command).parse_args(argv)
    if args.command is None:
        _parser(None).print_help()
        return 2
    from archspec.errors import UserError

    module, _add, run, _help = COMMANDS[args.command]
    _ignore_sigxfsz()
    try:
        return int(_load(module, run)(args) or 0)
    except UserError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        return getattr(e, "exit_code", 2)  # 2 bad input; 3 run busy (--no-wait); 1 write
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: one line here, the traceback in a file
        from blocks.plugins import PluginError  # only on failure: keeps --help instant
        from evaluator.store.atomic import write_fault

        reason = write_fault(e)
        if reason is not None:  # a full disk or read-only folder: the machine's, not a bug
            print(reason, file=sys.stderr)
            return 1

        if isinstance(e, PluginError):  # a broken third-party package: the user's to fix
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(internal_error(e, args.command), file=sys.stderr)
        return 1


def _ignore_sigxfsz() -> None:
    # Over a file-size limit (ulimit -f) a write then fails with EFBIG, which is reported
    # as one line, instead of the signal killing the process without a word.
    import signal

    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except (AttributeError, ValueError):  # no such signal here, or not the main thread
        pass


def internal_error(e: BaseException, where: str) -> str:
    """Write ``e``'s traceback to a file; the one line that says so (and where)."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    what = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
    try:
        fd, path = tempfile.mkstemp(prefix=f"archsearch-{where}-{time.strftime('%Y%m%d-%H%M%S')}-",
                                    suffix=".traceback.txt")
        with open(fd, "w") as f:
            f.write(f"archsearch {' '.join(sys.argv[1:])}\n\n{text}")
    except OSError:
        return f"internal error in {where} ({what}); the traceback could not be written"
    return (f"internal error in {where} ({what}); this is a bug in archsearch, not your "
            f"input. Full traceback: {path}")


if __name__ == "__main__":
    sys.exit(main())
