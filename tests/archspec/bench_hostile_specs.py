"""Benchmark (not a test): `archsearch validate` on hostile specs up to 1 MB.

Run on an idle machine from the repository root:

    OMP_NUM_THREADS=1 python tests/archspec/bench_hostile_specs.py

Each spec is validated in a fresh process (start-up included), interleaved with the
tiny example spec, 3 rounds; it prints the median wall and CPU seconds of each and the
ratio to the tiny spec measured in the same rounds. Issue 11 asks for < 5 s each.
"""
from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAD = "spec_version: 1\nname: big\nimage: {channels: 1, size: 8}\nmodel:\n  nodes:\n" \
       "    x: {block: input}\n"


def specs(d: Path) -> dict[str, Path]:
    out = {"tiny example": ROOT / "examples" / "specs" / "tiny_unet_8.yaml"}
    ids = [f"n{i}" for i in range(14)]
    dense = "".join(f"    {a}: {{block: add, in: [{', '.join(b for b in ids if b != a)}]}}\n"
                    for a in ids)
    chain = "".join(f"    n{i}: {{block: act, in: [{'x' if i == 0 else f'n{i - 1}'}]}}\n"
                    for i in range(999))
    bad = "".join(f"    n{i}: {{block: act, in: [q{i}, x, n{(i * 7) % 999}]}}\n"
                  for i in range(999))
    texts = {
        "dense cycle (1 KB)": HEAD + dense + "    y: {block: irfft2, in: [n0]}\n  output: y\n",
        "999-node chain": HEAD + chain + "  output: n998\n",
        "999 nodes, bad inputs": HEAD + bad + "  output: n0\n",
        "1 MB of vars": HEAD.replace("model:", "vars:\n" + "".join(
            f"  v{i}: [{', '.join(['1.5'] * 20)}]\n" for i in range(8500)) + "model:")
        + "    f: {block: rfft2, in: [x]}\n    y: {block: irfft2, in: [f]}\n  output: y\n",
    }
    for name, text in texts.items():
        p = d / (name.split()[0] + f"_{len(out)}.yaml")
        p.write_text(text)
        out[name] = p
    return out


def run(path: Path) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", "validate", "-q", str(path)], cwd=ROOT,
                   capture_output=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        cases = specs(Path(d))
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        for _ in range(3):
            for name, p in cases.items():
                times[name].append(run(p))
        base = statistics.median(w for w, _ in times["tiny example"])
        for name, ts in times.items():
            wall = statistics.median(w for w, _ in ts)
            cpu = statistics.median(c for _, c in ts)
            size = cases[name].stat().st_size
            print(f"{name:<24}{size:>9} B  wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
                  f"{wall / base:5.2f}x tiny")


if __name__ == "__main__":
    main()
