"""Measurements: quality metrics (FD/KD, FID/KID, LPIPS, spectral), statistics over
seeds, speed and FLOPs, per-step spectra of sampling trajectories.

Importing this package is cheap: nothing heavy is imported here.
"""
