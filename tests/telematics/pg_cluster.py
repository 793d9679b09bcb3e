"""A PostgreSQL primary and its streaming replica of the test's own, on free ports.

`initdb` and `pg_ctl` run as the `postgres` user (a cluster refuses to run as root) in a folder
of /tmp it owns; the standby is `pg_basebackup -R` of the primary, so it streams from it and is a
hot standby: it answers reads and refuses every write (SQLSTATE 25006).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from telematics.base.embedded import free_port

BIN = Path(os.environ.get("TELEMATICS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> str | None:
    """Why a cluster cannot be made here, or None if it can."""
    if not (BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {BIN}"
    if os.geteuid() != 0 and shutil.which("runuser") is None:
        return "needs root (runuser -u postgres) to own a cluster"
    return None


def _as_postgres(*args: str | Path) -> None:
    command = [str(a) for a in args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


class Cluster:
    """A primary and one streaming standby; `start` makes both, `stop` removes them."""

    def __init__(self) -> None:
        """Choose a folder and two ports."""
        self.root = Path(tempfile.mkdtemp(prefix="telematics-replica-"))
        self.primary_port, self.standby_port = free_port(), free_port()

    def dsn(self, port: int) -> str:
        """The DSN of the `postgres` database on one of the two servers."""
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @property
    def primary_dsn(self) -> str:
        """The primary's DSN."""
        return self.dsn(self.primary_port)

    @property
    def standby_dsn(self) -> str:
        """The standby's DSN."""
        return self.dsn(self.standby_port)

    def _pg_ctl(self, data: Path, port: int, action: str) -> None:
        options = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(BIN / "pg_ctl", "-D", data, "-o", options, "-l", f"{data}.log", "-w", action)

    def start(self) -> None:
        """initdb the primary, start it, base-backup the standby from it (`-R`), start that."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        primary, standby = self.root / "primary", self.root / "standby"
        _as_postgres(BIN / "initdb", "-D", primary, "-A", "trust", "-U", "postgres", "--no-sync")
        self._pg_ctl(primary, self.primary_port, "start")
        _as_postgres(
            BIN / "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "-D",
            standby,
            "-R",
            "-X",
            "stream",
            "--no-sync",
        )
        self._pg_ctl(standby, self.standby_port, "start")

    def stop(self) -> None:
        """Stop both servers (immediately) and remove the folder."""
        for name in ("standby", "primary"):
            data = self.root / name
            if (data / "postmaster.pid").exists():
                _as_postgres(BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
