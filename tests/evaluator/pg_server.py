"""A throw-away PostgreSQL server for tests: initdb into a temporary folder, listen on
127.0.0.1 at a free port, one database, stopped and removed at the end.

Uses Debian's ``postgresql`` binaries (``/usr/lib/postgresql/<v>/bin``) or any ``initdb``
on PATH. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user (made by the package) through ``runuser``.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def find_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, newest version first, or None."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()],
                   reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        cands.append(str(Path(on_path).parent))
    for c in cands:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextmanager
def postgres_server(db: str = "sweeps") -> Iterator[str]:
    """Yield ``postgresql://postgres@127.0.0.1:PORT/DB`` of a fresh server."""
    bindir = find_bin()
    if bindir is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl)")
    root = Path(tempfile.mkdtemp(prefix="archsearch-pg-", dir="/tmp"))
    data, port = root / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    os.chmod(root, 0o755)
    run = lambda *c: subprocess.run(_as_user([str(x) for x in c]), check=True,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    try:
        run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=50")
        run(bindir / "pg_ctl", "-D", data, "-o", opts, "-l", root / "log", "-w", "-t", "60",
            "start")
        try:
            _create_db(port, db)
            yield f"postgresql://postgres@127.0.0.1:{port}/{db}"
        finally:
            run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _create_db(port: int, db: str) -> None:
    import psycopg2

    end = time.time() + 30
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres",
                                    dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.time() > end:
                raise
            time.sleep(0.3)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()
