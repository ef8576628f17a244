"""The real Pub/Sub emulator from the Cloud SDK, on a free port, in its own process group."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from localdev.ports import free_port
from localdev.processes import start_group, stop_group, wait_until


class EmulatorUnavailable(RuntimeError):
    """The emulator cannot run on this machine; the message says what is missing."""


def emulator_command(host_port: str) -> list[str]:
    """The command that starts the emulator; raises EmulatorUnavailable naming what is missing."""
    if shutil.which("java") is None:
        raise EmulatorUnavailable("java is not installed (the Pub/Sub emulator needs a Java runtime)")
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailable("gcloud is not installed (install the Google Cloud CLI with the pubsub emulator)")
    sdk_root = Path(os.path.realpath(gcloud)).parent.parent
    launcher = sdk_root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    host, port = host_port.rsplit(":", 1)
    if launcher.exists():
        # The launcher directly: gcloud would add seconds of start-up for the same Java process.
        return [str(launcher), f"--host={host}", f"--port={port}"]
    return [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host_port}", "--quiet"]


@dataclass
class PubSubEmulator:
    host_port: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host_port}/", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_group(self.process)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def start_emulator(port: int | None = None, timeout: float = 60.0) -> PubSubEmulator:
    """Starts the emulator and waits until it answers. Stop it with `.stop()`."""
    host_port = f"127.0.0.1:{port or free_port()}"
    command = emulator_command(host_port)
    workdir = tempfile.TemporaryDirectory(prefix="pubsub-emulator-")
    log_path = Path(workdir.name) / "emulator.log"
    process = start_group(command, log_path)
    emulator = PubSubEmulator(host_port, process, log_path, workdir)
    try:
        wait_until(emulator.is_ready, process, timeout, "the Pub/Sub emulator", log_path)
    except BaseException:
        emulator.stop()
        raise
    return emulator


class RestartableEmulator:
    """An emulator on a fixed port that a fault test may stop and start again (it keeps nothing in between)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.host_port = f"127.0.0.1:{self.port}"
        self._current: PubSubEmulator | None = start_emulator(port=self.port)

    def stop(self) -> None:
        if self._current is not None:
            self._current.stop()
            self._current = None

    def start(self) -> None:
        """Starts it again on the same port; topics and messages are gone."""
        self._current = start_emulator(port=self.port)
