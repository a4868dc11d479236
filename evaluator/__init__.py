"""Evaluator: datasets, diffusion maths (schedules, losses), samplers, training and metrics.

Kept light on purpose: the spec validator imports :mod:`evaluator.datasets` and
:mod:`evaluator.samplers` to check names, so nothing heavy is imported here.
"""
