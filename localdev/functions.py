"""A Cloud Function under the real `functions-framework`, as a child process on a free port."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

from localdev.ports import free_port, is_listening
from localdev.processes import start_group, stop_group, tail, wait_until

FUNCTIONS_SOURCE = Path(__file__).resolve().parent.parent / "functions" / "main.py"


@dataclass
class FunctionProcess:
    target: str
    port: int
    process: Popen[bytes]
    log_path: Path
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def call(self, body: bytes | None = b"", method: str = "POST", timeout: float = 600) -> tuple[int, Any]:
        """Calls the function as Cloud Scheduler would; returns (status, decoded JSON body)."""
        request = urllib.request.Request(
            self.url,
            data=body if method != "GET" else None,
            method=method,
            headers={"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                return error.code, json.loads(payload)
            except json.JSONDecodeError:
                return error.code, payload.decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        stop_group(self.process)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> FunctionProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_function(
    target: str, env: Mapping[str, str], port: int | None = None, timeout: float = 60
) -> FunctionProcess:
    """Starts `functions-framework --target TARGET` on functions/main.py with `env` added to ours."""
    chosen = port or free_port()
    executable = str(Path(sys.executable).with_name("functions-framework"))
    workdir = tempfile.TemporaryDirectory(prefix=f"function-{target}-")
    log_path = Path(workdir.name) / "function.log"
    command = [
        executable,
        "--source",
        str(FUNCTIONS_SOURCE),
        "--target",
        target,
        "--port",
        str(chosen),
        "--host",
        "127.0.0.1",
    ]
    process = start_group(command, log_path, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
    function = FunctionProcess(target, chosen, process, log_path, workdir)
    try:
        wait_until(
            lambda: is_listening("127.0.0.1", chosen), process, timeout, f"functions-framework {target}", log_path
        )
    except BaseException:
        function.stop()
        raise
    return function
