"""The gateway process: the asyncio gRPC server on $PORT (plaintext HTTP/2, Cloud Run's h2c), the
Telemetry Gateway service, health checking and reflection, and an orderly stop on SIGTERM.

Stopping, within TELEMETRY_GATEWAY_SHUTDOWN_GRACE of SIGTERM (Cloud Run kills ~10 s after it):
1. health turns NOT_SERVING, so no new traffic is routed here;
2. streams stop reading, answer the batches they accepted, and end with UNAVAILABLE; the server
   refuses new calls and cancels whatever is still running when the stream share of the grace ends;
3. the workers finish their batches (the publisher flushes) in the rest of the grace, and are
   then ended: anything unanswered by then was not acknowledged and will be sent again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway_run.health import TopicHealth
from gateway_run.servicer import Servicer
from gateway_run.settings import Settings
from gateway_run.workers import Workers
from telemetry_events.rpc import SERVICE_NAME

logger = logging.getLogger(__name__)

# Of the shutdown grace, what is kept for the workers after the streams' share.
WORKER_SHARE_SECONDS = 1.5


class BindError(RuntimeError):
    """The port could not be listened on."""


def build_server(settings: Settings) -> grpc.aio.Server:
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_receive_bytes),
            # gRPC sets SO_REUSEPORT by default: a second process on the same port would then
            # silently share its traffic instead of failing to start.
            ("grpc.so_reuseport", 0),
        ]
    )


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
    server.add_generic_rpc_handlers((Servicer(settings, workers, shutting_down).handlers(),))
    health_pb2_grpc.add_HealthServicer_to_server(topic_health.servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
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
            "service_tokens": len(settings.service_token_sha256),
        },
    )
    health_task = asyncio.create_task(topic_health.run())

    await shutting_down.wait()
    started = time.monotonic()
    logger.info("stopping", extra={"grace_seconds": settings.shutdown_grace})
    health_task.cancel()
    await topic_health.stop()
    await server.stop(max(settings.shutdown_grace - WORKER_SHARE_SECONDS, 0.5))
    await workers.stop(settings.shutdown_grace - (time.monotonic() - started))
    logger.info("stopped", extra={"seconds": round(time.monotonic() - started, 3)})
