"""Where messages go: Pub/Sub through google-cloud-pubsub, or, in development mode, the log.

The Pub/Sub client batches messages in the background and resolves one future per message.
Its settings here are tuned for this gateway's traffic (batches of ~1,000 events of ~600
bytes arriving back to back):

- batches of up to 1,000 messages (Pub/Sub's per-request maximum) and 9.5 MB, sent after at
  most 50 ms: requests stay few and large, and a lone RecordEvent call waits little;
- flow control that BLOCKs the publishing thread once too many messages or bytes are waiting
  for Pub/Sub (the library's default is no limit at all), so a slow Pub/Sub cannot make the
  gateway buffer without bound;
- a retry deadline of TELEMETRY_GATEWAY_PUBLISH_TIMEOUT instead of the library's 10 minutes:
  past it the event is reported as not recorded and the exporter sends it again later.

No client is built at import time: the development mode needs no credentials.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future
from typing import Any, Protocol

from gateway_run.settings import Settings

logger = logging.getLogger(__name__)

BATCH_MAX_MESSAGES = 1000
BATCH_MAX_BYTES = 9_500_000
BATCH_MAX_LATENCY = 0.05


class Sink(Protocol):
    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> Future[Any]:
        """Starts publishing one message; the future resolves to its message ID or raises."""
        ...

    def stop(self) -> None:
        """Sends whatever is still batched and waits for it."""
        ...


class PubSubSink:
    """google-cloud-pubsub's PublisherClient with this gateway's batching, flow control and retry."""

    def __init__(self, settings: Settings) -> None:
        from google.api_core import exceptions, retry
        from google.cloud import pubsub_v1
        from google.cloud.pubsub_v1 import types

        # The same errors the library retries by default, within our own deadline.
        publish_retry = retry.Retry(
            initial=0.1,
            maximum=5.0,
            multiplier=2.0,
            predicate=retry.if_exception_type(
                exceptions.Aborted,
                exceptions.Cancelled,
                exceptions.DeadlineExceeded,
                exceptions.InternalServerError,
                exceptions.ResourceExhausted,
                exceptions.ServiceUnavailable,
                exceptions.Unknown,
            ),
            timeout=settings.publish_timeout,
        )
        self._client = pubsub_v1.PublisherClient(
            batch_settings=types.BatchSettings(
                max_messages=BATCH_MAX_MESSAGES, max_bytes=BATCH_MAX_BYTES, max_latency=BATCH_MAX_LATENCY
            ),
            publisher_options=types.PublisherOptions(
                flow_control=types.PublishFlowControl(
                    message_limit=settings.max_outstanding_messages,
                    byte_limit=settings.max_outstanding_bytes,
                    limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
                ),
                retry=publish_retry,
                timeout=min(settings.publish_timeout, 60.0),
                enable_open_telemetry_tracing=False,
            ),
        )

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> Future[Any]:
        return self._client.publish(topic, data, **attributes)

    def stop(self) -> None:
        self._client.stop()


class LogSink:
    """Development mode: logs each message it would publish, and reports it published."""

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> Future[Any]:
        logger.info(
            "development mode: message not published",
            extra={"topic": topic, "attributes": attributes, "payload": json.loads(data)},
        )
        future: Future[Any] = Future()
        future.set_result("dev-mode")
        return future

    def stop(self) -> None:
        pass


def make_sink(settings: Settings) -> Sink:
    return LogSink() if settings.dev_mode else PubSubSink(settings)
