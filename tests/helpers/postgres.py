"""A throw-away PostgreSQL server for tests: initdb + pg_ctl on a temporary folder and a free port.

Debian's `postgresql` package provides the binaries (.ci/run installs it when missing); without
them, or without the Python driver (psycopg 3, the `test` extra), the fixture skips and says why.
PostgreSQL refuses to run as root, so as root the server runs as `nobody` (via runuser).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (PATH first, then Debian's /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="pfl-postgres-"))  # not under pytest's root-only tmp folder
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            import pwd

            if not shutil.which("runuser"):
                pytest.skip("PostgreSQL cannot run as root and runuser (util-linux) is missing")
            user = pwd.getpwnam("nobody")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "nobody", "--"]
        self.data = self.dir / "data"

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        proc = subprocess.run([*self.prefix, *cmd], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C"}, cwd=self.dir)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")

    def start(self) -> "Server":
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"),
                  "-w", "-t", "60", "start")
        return self

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        except Exception:  # noqa: BLE001 - best effort; the folder goes anyway
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres_url():
    """The URL of a fresh PostgreSQL server on 127.0.0.1 (stopped and deleted afterwards)."""
    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:
        import psycopg  # noqa: F401 - SQLAlchemy 2.1 driver for postgresql:// URLs (psycopg 3)
    except ImportError:
        pytest.skip("the PostgreSQL driver psycopg (3) is not installed: pip install -e '.[test]'")
    server = Server(bindir)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server.url
    server.stop()
