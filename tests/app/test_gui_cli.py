"""``archsearch app``: light imports, bad input, a real start on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.cli import main
from tests.app.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_command_modules_import_nothing_heavy():
    code = ("import sys, app.commands.gui, app.commands.diff; "
            "print(sorted(m for m in ('torch', 'gradio', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_app_and_diff(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert " app " in out and " diff " in out


def test_bad_port_exits_2(capsys):
    assert main(["app", "--port", "0"]) == 2
    assert "--port must be 1-65535" in capsys.readouterr().err


def test_app_starts_on_localhost(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the command must set it itself
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", str(port),
                             "--results", str(tmp_path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, body = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.3)
        assert body is not None, proc.communicate(timeout=5)[0] if proc.poll() else "timeout"
        assert "archsearch" in body or "gradio" in body.lower()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}" in out
    assert "gradio.live" not in out  # no share link unless --share
