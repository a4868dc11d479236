"""Sweeps: factors mapped to spec paths, designs (Taguchi orthogonal arrays, grid, random,
TPE) run as an Optuna study, and main-effects / S/N / ANOVA analysis.

- :mod:`evaluator.sweeps.schema`: the sweep file's pydantic models and data classes;
- :mod:`evaluator.sweeps.spec`: loading a sweep file and resolving its rows into specs;
- :mod:`evaluator.sweeps.designs`: orthogonal arrays (from pydoe, checked) and grids;
- :mod:`evaluator.sweeps.study`: the Optuna study, storages, workers and trials;
- :mod:`evaluator.sweeps.analysis`: main effects, S/N ratios, ANOVA and plotly charts.
"""
