"""The real gateway (`python -m gateway_run`) as a child process, for tests and the local demo.

    with start_gateway({"TELEMETRY_PUBSUB_TOPIC": "events", ...}) as gateway:
        os.environ["TELEMETRY_GATEWAY_ADDR"] = gateway.url      # http://127.0.0.1:PORT
        ...
        status = gateway.terminate()                           # SIGTERM, as Cloud Run sends it

The child runs in its own process group on a free port; `start_gateway` returns once gRPC
health answers SERVING (or, with `require_serving=False`, answers at all). Its JSON log lines
are kept in a file: `log_text()`, `log_records()`.

`development_license()` makes a throwaway signing key pair and license keys signed with it, so
a test or demo can run a licensed exporter without any operator key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localdev.ports import free_port
from localdev.processes import ServiceStartError, start_group, stop_group, tail

DEFAULT_START_TIMEOUT = 60.0


@dataclass
class GatewayProcess:
    """A running gateway. Stop it with `stop()` (or use it as a context manager)."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """host:port, for grpc.insecure_channel."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The value for TELEMETRY_GATEWAY_ADDR (plaintext, local only)."""
        return f"http://{self.address}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def health(self, service: str = "", timeout: float = 2.0) -> str:
        """The health status name (SERVING, NOT_SERVING, ...) or UNREACHABLE."""
        try:
            with grpc.insecure_channel(self.address) as channel:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout
                )
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_for_health(self, expected: str | tuple[str, ...] = "SERVING", timeout: float = 30.0) -> str:
        """Waits until health is one of `expected`; raises ServiceStartError with the log tail if not."""
        wanted = (expected,) if isinstance(expected, str) else expected
        deadline = time.monotonic() + timeout
        status = "UNREACHABLE"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(f"the gateway exited with status {self.process.returncode}:\n{self.log_tail()}")
            status = self.health(timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
            if status in wanted:
                return status
            time.sleep(0.05)
        raise ServiceStartError(f"gateway health stayed {status}, not {'/'.join(wanted)}:\n{self.log_tail()}")

    def wait_for_log(self, message: str, timeout: float = 30.0) -> dict[str, Any]:
        """Waits for a log record with this message; raises ServiceStartError if the gateway exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.log_records():
                if record.get("message") == message:
                    return record
            if self.process.poll() is not None:
                raise ServiceStartError(f"the gateway exited with status {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise ServiceStartError(f"the gateway did not log {message!r} within {timeout:.0f} s:\n{self.log_tail()}")

    def terminate(self, timeout: float = 15.0) -> int | None:
        """Sends SIGTERM to the gateway process alone, as Cloud Run does; returns its exit status.

        Returns None if it did not exit within `timeout` (it is then killed by `stop()`).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Stops the gateway and everything it started (SIGTERM to the group, then SIGKILL)."""
        stop_group(self.process, grace=10.0)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines are skipped)."""
        records = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_gateway(
    env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    inherit_env: bool = True,
    require_serving: bool = True,
    timeout: float = DEFAULT_START_TIMEOUT,
    log_path: Path | None = None,
) -> GatewayProcess:
    """Starts `python -m gateway_run` and waits until it is ready.

    Args:
        env: gateway settings (see docs/gateway.md); PORT is set here.
        port: the port to listen on; a free one when None.
        inherit_env: start from this process's environment (PUBSUB_EMULATOR_HOST, PATH, ...).
        require_serving: wait for SERVING; when False, any health answer will do (for example
            NOT_SERVING because the topic does not exist yet).
        timeout: seconds to wait for readiness.
        log_path: where the gateway's output goes; when None, a temporary file that `stop()`
            removes (read the logs before stopping, or pass a path to keep them).

    Raises:
        ServiceStartError: the gateway exited or was not ready in time; the message has its log.
    """
    child_env = dict(os.environ) if inherit_env else {"PATH": os.environ.get("PATH", "")}
    child_env.update(env or {})
    chosen_port = port or free_port()
    child_env["PORT"] = str(chosen_port)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    workdir = None
    if log_path is None:
        workdir = tempfile.TemporaryDirectory(prefix="telemetry-gateway-")
        log_path = Path(workdir.name) / "gateway.log"
    process = start_group([sys.executable, "-m", "gateway_run"], log_path, env=child_env)
    gateway = GatewayProcess(chosen_port, process, log_path, child_env, workdir)
    try:
        started = time.monotonic()
        if child_env.get("LOG_LEVEL", "info").strip().lower() in ("", "debug", "info"):
            # Its own log line first: whatever else may answer health on this port is not our gateway.
            gateway.wait_for_log("gateway listening", timeout=timeout)
        remaining = max(timeout - (time.monotonic() - started), 1.0)
        gateway.wait_for_health("SERVING" if require_serving else ("SERVING", "NOT_SERVING"), timeout=remaining)
    except BaseException:
        gateway.stop()
        raise
    return gateway


@dataclass(frozen=True)
class DevelopmentLicense:
    """A throwaway signing key pair; `public_key` is the gateway's TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY."""

    private_key: str
    public_key: str

    def issue(self, licensee: str = "Local Development", instance_id: str | None = None, days: float = 30) -> str:
        """A license key signed by this pair, valid for `days` (negative: already expired)."""
        from gateway_run import licensing

        now = int(time.time())
        expires = now + int(days * 86400)
        issued = min(now, expires - 1)
        return licensing.issue(self.private_key, licensee, expires, instance_id=instance_id, issued_at=issued)


def development_license() -> DevelopmentLicense:
    from gateway_run import licensing

    private_key, public_key = licensing.generate_keypair()
    return DevelopmentLicense(private_key, public_key)
