"""Diffusion maths: noise schedules, losses and samplers.

Importing this package is cheap: nothing heavy is imported here.
"""
