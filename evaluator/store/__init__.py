"""The run store: atomic file I/O, run folders keyed by spec hash, checkpoints and
snapshots, run queries, the cache folder and the spec workspace.

Importing this package is cheap: nothing heavy is imported here.
"""
