"""gRPC health, two questions with two service names.

- `""` and the Telemetry Gateway service: can this gateway publish? SERVING only while the events
  topic is reachable and the workers are up. Cloud Run's startup probe asks this, so a revision
  that cannot publish (topic missing, no permission, Pub/Sub down) never receives traffic. The
  dead-letter topic is not probed: the gateway's identity may publish to it without being
  allowed to read its configuration. In development mode there is no topic to probe.
- `liveness`: is this process worth keeping? SERVING while its workers are up, whatever Pub/Sub
  does. For the liveness probe: restarting instances because Pub/Sub is down would only add
  cold starts to the outage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from grpc_health.v1 import health, health_pb2

from gateway_run.settings import Settings
from gateway_run.workers import Workers
from telemetry_events.rpc import SERVICE_NAME

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PROBE_TIMEOUT_SECONDS = 5.0
LIVENESS = "liveness"


class TopicHealth:
    """Probes the topic every TELEMETRY_GATEWAY_HEALTH_INTERVAL and publishes the verdict."""

    def __init__(self, settings: Settings, workers: Workers) -> None:
        self.servicer = health.aio.HealthServicer()
        self._settings = settings
        self._workers = workers
        self._client: Any = None  # built on first probe: no credentials needed before
        self._serving: bool | None = None

    async def start(self) -> None:
        """Readiness NOT_SERVING (the servicer starts out SERVING) until the first probe passes."""
        for service in ("", SERVICE_NAME):
            await self.servicer.set(service, NOT_SERVING)
        await self.servicer.set(LIVENESS, SERVING if self._workers.healthy else NOT_SERVING)

    async def run(self) -> None:
        """Probes until cancelled."""
        while True:
            problem = await self.probe()
            await self._publish(problem)
            await asyncio.sleep(self._settings.health_interval)

    async def probe(self) -> str | None:
        """What keeps the gateway from serving, or None."""
        if not self._workers.healthy:
            return "workers are not running"
        if self._settings.dev_mode:
            return None
        return await asyncio.to_thread(self._probe_topic)

    async def stop(self) -> None:
        await self.servicer.enter_graceful_shutdown()

    def _probe_topic(self) -> str | None:
        from google.api_core import exceptions
        from google.auth.exceptions import GoogleAuthError

        try:
            if self._client is None:
                from google.cloud import pubsub_v1

                self._client = pubsub_v1.PublisherClient()
            self._client.get_topic(request={"topic": self._settings.topic}, timeout=PROBE_TIMEOUT_SECONDS, retry=None)
        except exceptions.NotFound:
            return f"topic {self._settings.topic} does not exist"
        except (exceptions.GoogleAPIError, GoogleAuthError) as error:
            return f"topic {self._settings.topic} is not reachable: {type(error).__name__}: {str(error)[:300]}"
        return None

    async def _publish(self, problem: str | None) -> None:
        serving = problem is None
        if serving != self._serving:
            if serving:
                logger.info("serving", extra={"topic": self._settings.topic})
            else:
                logger.warning("not serving", extra={"reason": problem})
        self._serving = serving
        for service in ("", SERVICE_NAME):
            await self.servicer.set(service, SERVING if serving else NOT_SERVING)
        await self.servicer.set(LIVENESS, SERVING if self._workers.healthy else NOT_SERVING)
