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


class PgServer:
    """A running test server: ``url``, and ``stop()`` / ``start()`` to restart it (same
    data folder and port) as an operator would in the middle of a sweep."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir, self.data, self.root, self.port = bindir, root / "data", root, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/"

    def _run(self, *cmd: object, check: bool = True) -> None:
        subprocess.run(_as_user([str(x) for x in cmd]), check=check, capture_output=True,
                       text=True, timeout=120)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=50")
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-o", opts, "-l",
                  self.root / "log", "-w", "-t", "60", "start")

    def stop(self, check: bool = True) -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop",
                  check=check)


@contextmanager
def postgres_server(db: str = "sweeps") -> Iterator[PgServer]:
    """Yield a fresh server whose ``url`` is ``postgresql://postgres@127.0.0.1:PORT/DB``."""
    bindir = find_bin()
    if bindir is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl)")
    root = Path(tempfile.mkdtemp(prefix="archsearch-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    os.chmod(root, 0o755)
    srv = PgServer(bindir, root, _free_port())
    try:
        srv._run(bindir / "initdb", "-D", srv.data, "-A", "trust", "-U", "postgres",
                 "--no-sync")
        srv.start()
        try:
            _create_db(srv.port, db)
            srv.url += db
            yield srv
        finally:
            srv.stop(check=False)  # a test may have left it stopped
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _create_db(port: int, db: str) -> None:
    import psycopg

    end = time.time() + 30
    while True:
        try:
            conn = psycopg.connect(host="127.0.0.1", port=port, user="postgres",
                                   dbname="postgres", autocommit=True)
            break
        except psycopg.OperationalError:
            if time.time() > end:
                raise
            time.sleep(0.3)
    with conn:
        conn.execute(f'CREATE DATABASE "{db}"')
