"""The pipeline: budgets, training then evaluating specs, side-by-side sampling,
background jobs, and the evaluator's spec checks.

Importing this package is cheap: nothing heavy is imported here.
"""
