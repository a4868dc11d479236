"""Evaluator: the flow spec -> train -> sample -> measure -> store -> report.

Sub-packages, lowest first (a package imports only those before it; tests/test_layers.py
checks): ``store`` (run folders, checkpoints, queries), ``data``, ``diffusion`` (schedules,
losses, samplers), ``training``, ``measure`` (metrics, statistics, profile), ``report``,
``pipeline`` (budgets, evaluation, jobs, spec checks) and ``sweeps``.

Kept light on purpose: the spec validator imports :mod:`evaluator.data.datasets` and
:mod:`evaluator.diffusion.samplers` to check names, so nothing heavy is imported here.
"""
