"""Child processes in their own process group, so that stopping one stops all its children.

The Pub/Sub emulator's Java process outlives the `gcloud` wrapper that starts it; killing the
whole group is the only reliable way to leave nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceStartError(RuntimeError):
    """A local service did not come up; the message carries the end of its log."""


def start_group(
    argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its whole life
    try:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float, what: str, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise ServiceStartError(f"{what} exited with status {process.returncode}:\n{tail(log_path)}")
        time.sleep(0.1)
    stop_group(process)
    raise ServiceStartError(f"{what} was not ready within {timeout:.0f} s:\n{tail(log_path)}")


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the group, then SIGKILL to whatever is left after `grace` seconds.

    The group's ID is the leader's PID (start_group starts a new session), so the group is
    reached even when the leader itself was already killed and reaped, as fault tests do:
    its children (the gateway's worker processes, say) must not outlive it.
    """
    pgid = process.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(pgid):
            break
    # Children of the group leader may still be exiting; make sure none remain.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
