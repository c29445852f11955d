"""A throwaway PostgreSQL cluster of the fault suite's own, to crash and restart at will.

The shared server on 5432 must never be restarted or reconfigured, so the tests that take the
database down (F5) or cut workers off it (network namespaces) run on a cluster made here:
`initdb` into a temporary directory, `pg_ctl` on a free port. PostgreSQL refuses to run as root,
so when the suite runs as root the binaries run as the `postgres` OS user (`runuser`), who is
given the directory. The cluster listens on every address but its `pg_hba.conf` trusts only
loopback and the suite's namespace links (10.0.0.0/8), so worker "hosts" in network namespaces
reach it through their veth link.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

BIN = Path(os.environ.get("ROADIE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
NAMESPACE_NET = "10.0.0.0/8"  # the addresses netns.py gives worker hosts


def available() -> str | None:
    """Why a throwaway cluster cannot be made here, or None if it can."""
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return f"no initdb/pg_ctl in {BIN} (set ROADIE_TEST_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to run PostgreSQL as `postgres`"
    return None


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One PostgreSQL cluster in a temporary directory: create, start, crash, restart, destroy."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="roadie-pgcluster-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run(
            BIN / "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        settings = {
            "port": self.port,
            "listen_addresses": "'*'",
            "unix_socket_directories": f"'{self.dir}'",
            "max_connections": 200,
            "fsync": "off",  # the machine does not crash, only PostgreSQL: no need to sync
            "shared_buffers": "'64MB'",
            "shared_preload_libraries": "'pg_stat_statements'",
            "logging_collector": "off",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {NAMESPACE_NET} trust\n")

    def _run(self, *command: object, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = [str(part) for part in command]
        if self._as_postgres:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(
            args, check=check, capture_output=True, text=True, timeout=120, cwd=self.dir
        )

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start it and return once it accepts connections (`pg_ctl -w`)."""
        self._run(BIN / "pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it; mode `immediate` is a crash: no checkpoint, crash recovery at the next start."""
        self._run(BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def reload(self) -> None:
        """Make it read its configuration files again (pg_hba.conf, postgresql.conf)."""
        self._run(BIN / "pg_ctl", "-D", self.data, "reload")

    def running(self) -> bool:
        return self._run(BIN / "pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def restart_immediate(self) -> None:
        """`pg_ctl restart -m immediate`: crash it and start it again at once."""
        self._run(
            BIN / "pg_ctl", "-D", self.data, "-l", self.log_path, "-m", "immediate", "-w",
            "-t", "60", "restart",
        )  # fmt: skip

    def down_for(self, seconds: float) -> threading.Thread:
        """Crash it now and start it again after `seconds`, in a thread; join it to know it is up."""
        self.stop("immediate")

        def later() -> None:
            time.sleep(seconds)
            self.start()

        thread = threading.Thread(target=later, name="pgcluster-restart", daemon=True)
        thread.start()
        return thread

    def destroy(self) -> None:
        """Stop it if it runs and delete its directory."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """A new database on this cluster; its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def reachable(self) -> bool:
        """Whether it answers a query now."""
        try:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
