"""The command-line surface: one module per group of ``archsearch`` subcommands.

Each command is a pair ``add_<name>(parser)`` / ``run_<name>(args) -> exit code``,
listed in :data:`app.cli.COMMANDS`. Modules here import only the standard library and
light core modules at import time, so ``archsearch --help`` stays instant.
"""
