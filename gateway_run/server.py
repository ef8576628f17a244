"""The gateway process: the asyncio gRPC server on $PORT (plaintext HTTP/2, Cloud Run's h2c), the
Telemetry Gateway service, health checking and reflection, and an orderly stop on SIGTERM.

Connections are bounded by gRPC's own server options (each checked with grpcio 1.85 against raw
sockets, tests/gateway/test_connection_limits.py): a connection must finish the HTTP/2 preface
within TELEMETRY_GATEWAY_HANDSHAKE_TIMEOUT; one without calls is closed after
TELEMETRY_GATEWAY_CONNECTION_IDLE_TIMEOUT; every connection is told to go away after
TELEMETRY_GATEWAY_MAX_CONNECTION_AGE and closed ..._GRACE later; one with calls is pinged after
TELEMETRY_GATEWAY_KEEPALIVE_TIME of silence and closed when the ping is not answered within
TELEMETRY_GATEWAY_KEEPALIVE_TIMEOUT; a client that pings more often than
TELEMETRY_GATEWAY_MIN_CLIENT_PING_INTERVAL while no data flows is sent away (GOAWAY
ENHANCE_YOUR_CALM) at its third such ping.

Stopping, within TELEMETRY_GATEWAY_SHUTDOWN_GRACE of SIGTERM (Cloud Run kills ~10 s after it):
1. health turns NOT_SERVING, so no new traffic is routed here;
2. streams stop reading, answer the batches they accepted, and end with UNAVAILABLE; the server
   refuses new calls and cancels whatever is still running when the stream share of the grace ends;
3. the workers finish their batches (the publisher flushes) in the rest of the grace, and are
   then ended: anything unanswered by then was not acknowledged and will be sent again;
4. the streams cut short log their line, counting what their finished batches published.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from gateway_run import reflection
from gateway_run.health import TopicHealth
from gateway_run.servicer import Servicer, hard_receive_limit
from gateway_run.settings import Settings
from gateway_run.workers import Workers
from telemetry_events.rpc import SERVICE_NAME

logger = logging.getLogger(__name__)

# Of the shutdown grace, what is kept for the workers after the streams' share.
WORKER_SHARE_SECONDS = 1.5
# Of the workers' share, what is kept at the end for the log lines of streams cut short.
SETTLE_SHARE_SECONDS = 0.3
# Bad pings (more often than the minimum interval while no data flows) tolerated before GOAWAY: gRPC's default.
MAX_PING_STRIKES = 2


class BindError(RuntimeError):
    """The port could not be listened on."""


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """gRPC core channel arguments (grpc/impl/channel_arg_names.h) for the limits above."""

    def ms(seconds: float) -> int:
        return round(seconds * 1000)

    return [
        # Above the gateway's own limit, which the servicer enforces so that it can log the refusal.
        ("grpc.max_receive_message_length", hard_receive_limit(settings)),
        # gRPC sets SO_REUSEPORT by default: a second process on the same port would then
        # silently share its traffic instead of failing to start.
        ("grpc.so_reuseport", 0),
        ("grpc.server_handshake_timeout_ms", ms(settings.handshake_timeout)),
        ("grpc.max_connection_idle_ms", ms(settings.connection_idle_timeout)),
        ("grpc.max_connection_age_ms", ms(settings.max_connection_age)),
        ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace)),
        ("grpc.keepalive_time_ms", ms(settings.keepalive_time)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout)),
        # With grpcio 1.85 an unanswered keepalive ping closes the connection only after this
        # (internal, default one minute) ping timeout, whatever keepalive_timeout_ms says.
        ("grpc.http2.ping_timeout_ms", ms(settings.keepalive_timeout)),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(settings.min_client_ping_interval)),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]


def build_server(settings: Settings) -> grpc.aio.Server:
    return grpc.aio.server(options=server_options(settings))


def bind(server: grpc.aio.Server, port: int) -> str:
    """Listens on every interface, IPv6 and IPv4 where possible; returns the address bound."""
    for address in (f"[::]:{port}", f"0.0.0.0:{port}"):
        try:
            if server.add_insecure_port(address):
                return address
        except RuntimeError:
            continue
    raise BindError(f"cannot listen on port {port} (PORT): is another process using it?")


async def serve(settings: Settings) -> None:
    """Runs the gateway until SIGTERM or SIGINT, then stops it as described above."""
    loop = asyncio.get_running_loop()
    shutting_down = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutting_down.set)

    workers = Workers(settings)
    await workers.start()
    topic_health = TopicHealth(settings, workers)
    await topic_health.start()

    server = build_server(settings)
    servicer = Servicer(settings, workers, shutting_down)
    server.add_generic_rpc_handlers((servicer.handlers(),))
    health_pb2_grpc.add_HealthServicer_to_server(topic_health.servicer, server)
    reflection.enable(server, (SERVICE_NAME, health.SERVICE_NAME))
    try:
        address = bind(server, settings.port)
    except BindError:
        await workers.stop(1.0)
        raise
    await server.start()
    logger.info(
        "gateway listening",
        extra={
            "address": address,
            "topic": settings.topic,
            "deadletter_topic": settings.deadletter_topic,
            "pubsub_emulator_host": settings.emulator_host,
            "dev_mode": settings.dev_mode,
            "workers": settings.workers,
            "license_public_keys": len(settings.license_public_keys),
            "allow_unlicensed": settings.allow_unlicensed,
            "service_tokens": len(settings.service_tokens),
            "limits": {
                "handshake_timeout": settings.handshake_timeout,
                "connection_idle_timeout": settings.connection_idle_timeout,
                "max_connection_age": settings.max_connection_age,
                "metadata_timeout": settings.metadata_timeout,
                "stream_idle_timeout": settings.stream_idle_timeout,
                "max_queue_wait": settings.max_queue_wait,
            },
        },
    )
    health_task = asyncio.create_task(topic_health.run())

    await shutting_down.wait()
    started = time.monotonic()
    logger.info("stopping", extra={"grace_seconds": settings.shutdown_grace})
    health_task.cancel()
    await topic_health.stop()
    await server.stop(max(settings.shutdown_grace - WORKER_SHARE_SECONDS, 0.5))
    await workers.stop(settings.shutdown_grace - (time.monotonic() - started) - SETTLE_SHARE_SECONDS)
    # The log lines of streams cut short, now that their batches have finished or been ended.
    await servicer.settle(settings.shutdown_grace - (time.monotonic() - started))
    logger.info("stopped", extra={"seconds": round(time.monotonic() - started, 3)})
