"""A throwaway Postgres cluster: initdb into a temporary directory, started on a free port.

As root, Postgres refuses to run, so initdb and pg_ctl run as the `postgres` user through
runuser. The cluster trusts local connections and trades durability for speed (fsync off):
it exists for tests and demos and is deleted when stopped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from localdev.ports import free_port, is_listening
from localdev.processes import ServiceStartError, tail

_FAST_UNSAFE_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
}


class PostgresUnavailable(RuntimeError):
    """Postgres' server programs are not installed; the message says so."""


def _server_bin_dir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    raise PostgresUnavailable("initdb is not installed (apt-get install postgresql)")


@dataclass
class PostgresCluster:
    port: int
    data_dir: Path
    bin_dir: Path
    run_as: str | None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def start(self) -> None:
        log = self.data_dir.parent / "postgres.log"
        result = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-w", "-t", "60", "start", check=False)
        if result.returncode != 0 or not is_listening("127.0.0.1", self.port):
            raise ServiceStartError(f"postgres did not start: {result.stderr.strip()}\n{tail(log)}")

    def restart(self, mode: str = "immediate") -> None:
        """Stops the server (immediate: as a crash would) and starts it again on the same port."""
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start_cluster(port: int | None = None) -> PostgresCluster:
    bin_dir = _server_bin_dir()
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))
    data_dir = root / "data"
    data_dir.mkdir()
    if run_as:
        shutil.chown(root, run_as)
        shutil.chown(data_dir, run_as)
    os.chmod(root, 0o755)
    cluster = PostgresCluster(port or free_port(), data_dir, bin_dir, run_as)
    result = cluster._run(
        "initdb", "-D", str(data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync", check=False
    )
    if result.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise ServiceStartError(f"initdb failed: {result.stderr.strip()}")
    settings = {
        **_FAST_UNSAFE_SETTINGS,
        "port": str(cluster.port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{root}'",
    }
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    try:
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster
