"""Start-up cost of the block-plugin scan (entry point ``archsearch.blocks``).

The block registry reads its entry points with importlib.metadata on first use. This
measures, side by side in one run (interleaved, medians of 7 fresh processes each), a
process that imports ``blocks`` only against one that also uses the registry (and so
scans the installed distributions), and prints the ratio.

    OMP_NUM_THREADS=1 python benchmarks/plugin_scan.py
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = {"import blocks": "import blocks",
         "import blocks + first registry use": "import blocks; blocks.BLOCKS.names()"}


def main(repeats: int = 7) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(repeats):
        for label, code in CASES.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
            times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:<40} {v:.3f} s (median of {repeats})")
    a, b = med.values()
    print(f"ratio with scan / without: {b / a:.3f}")


if __name__ == "__main__":
    main()
