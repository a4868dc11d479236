"""Training: the loop, EMA, RNG state, the spectral monitor and warm starts.

Importing this package is cheap: nothing heavy is imported here.
"""
