"""A throwaway PostgreSQL server for the tests: a fresh cluster in a temporary directory, reached
only through a unix socket there, with one new database per test.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (else `nobody`)
and its commands run through runuser.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from tests.ports import free_port


def _binary(name: str) -> str:
    """The PostgreSQL program `name`, from PATH or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version, reverse=True)), None
    )
    if found is None:
        raise FileNotFoundError(
            f"{name} is missing (not in PATH nor /usr/lib/postgresql/*/bin): install the Debian package postgresql"
        )
    return found


def _version(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


class PostgresServer:
    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="omniserve-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
            if user is None or shutil.which("runuser") is None:
                raise RuntimeError("running as root, PostgreSQL needs the user postgres or nobody and runuser")
            os.chown(self.dir, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            self.as_user = ["runuser", "-u", user, "--"]

    def start(self) -> None:
        # Durability is no concern for a test cluster: fewer fsyncs leave the CPU to the tests.
        options = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
        try:
            self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
            self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        except Exception:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def new_database(self) -> str:
        """A SQLAlchemy URL of a new, empty database."""
        name = f"test_{uuid.uuid4().hex}"
        with psycopg.connect(
            host=str(self.dir), port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@/{name}?host={self.dir}&port={self.port}"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True)
        if done.returncode != 0:
            log = self.dir / "log"
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}"
                + (log.read_text() if log.exists() else "")
            )


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
