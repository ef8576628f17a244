"""Where requests go: Pub/Sub through google-cloud-pubsub's generated client, or, in development mode, the log.

The workers hand over whole PublishRequests (up to 1,000 messages or 10 MB, serialized), and
this module sends each with `google.pubsub_v1.PublisherAsyncClient.publish(request=...)` on the
gateway's event loop. Compared with the library's per-message client (a future, batch
bookkeeping and proto-plus marshalling for every message) that is one call per thousand events.
What the library gives is kept: credentials, the endpoint and the emulator
(PUBSUB_EMULATOR_HOST) come from its defaults, and each request is retried with
`google.api_core.retry.AsyncRetry` on the errors the library itself retries, until
TELEMETRY_GATEWAY_PUBLISH_TIMEOUT has passed; the request then fails and its events are not
acknowledged, to be sent again.

Back-pressure: at most TELEMETRY_GATEWAY_PUBLISH_REQUESTS requests, holding at most
TELEMETRY_GATEWAY_PUBLISH_MAX_OUTSTANDING_MESSAGES messages and ..._BYTES bytes, are in flight at
once; a batch whose request does not fit waits (and with it the stream that sent it, which
gRPC's flow control then holds), so a slow Pub/Sub cannot make the gateway buffer without bound.
One request bigger than a budget still goes, alone.

A channel that lost its connection (Pub/Sub restarted, a network cut) waits out gRPC's growing
reconnect backoff, which can grow far longer than the publish deadline: when an attempt fails
while the channel is in TRANSIENT_FAILURE, the client is closed and the next attempt gets a new
one, which connects at once.

No client is built at import time: the development mode needs no credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from gateway_run.pubsub_messages import PublishRequestBytes
from gateway_run.settings import Settings

logger = logging.getLogger(__name__)

# The longest one attempt may take, within the publish deadline.
ATTEMPT_TIMEOUT_SECONDS = 60.0
# At most one new client per this many seconds, however many requests fail at once.
RECONNECT_INTERVAL_SECONDS = 0.25


class Publisher(Protocol):
    async def start(self) -> None:
        """Builds the client (on the running event loop)."""
        ...

    async def publish(self, request: PublishRequestBytes) -> Sequence[str]:
        """Publishes one request; returns its message IDs in order, or raises."""
        ...

    async def stop(self, timeout: float) -> None:
        """Lets requests in flight finish for up to `timeout` seconds, then cancels the rest."""
        ...


class InFlight:
    """Requests, messages and bytes in flight to Pub/Sub, each under its limit; waiting is FIFO."""

    def __init__(self, max_requests: int, max_messages: int, max_bytes: int) -> None:
        self._limits = (max_requests, max_messages, max_bytes)
        self.requests = self.messages = self.bytes = 0
        self._changed = asyncio.Condition()
        # Admission one at a time, in arrival order (asyncio.Lock is fair): a big request at the head
        # is not overtaken forever by small ones that would still fit.
        self._turnstile = asyncio.Lock()

    def _fits(self, messages: int, size: int) -> bool:
        max_requests, max_messages, max_bytes = self._limits
        if self.requests == 0:
            return True  # alone, whatever its size
        return (
            self.requests < max_requests and self.messages + messages <= max_messages and self.bytes + size <= max_bytes
        )

    @contextlib.asynccontextmanager
    async def hold(self, messages: int, size: int) -> AsyncIterator[None]:
        async with self._turnstile, self._changed:
            await self._changed.wait_for(lambda: self._fits(messages, size))
            self.requests += 1
            self.messages += messages
            self.bytes += size
        try:
            yield
        finally:
            async with self._changed:
                self.requests -= 1
                self.messages -= messages
                self.bytes -= size
                self._changed.notify_all()

    async def wait_empty(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.requests == 0)


class PubSubPublisher:
    """The generated async client, with this gateway's retry deadline, back-pressure and reconnection."""

    def __init__(self, settings: Settings) -> None:
        from google.api_core import exceptions, retry

        self._settings = settings
        self._in_flight = InFlight(
            settings.publish_requests, settings.max_outstanding_messages, settings.max_outstanding_bytes
        )
        self._client: Any = None
        self._stale: Any = None  # the client whose channel was found waiting out a backoff
        self._replacing = asyncio.Lock()
        self._built_at = 0.0
        self._clients_built = 0
        self._reconnects = 0  # since the last request that went through
        self._tasks: set[asyncio.Task[Any]] = set()
        # The errors google-cloud-pubsub retries by default, within our own deadline.
        self._retry = retry.AsyncRetry(
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
            on_error=self._after_failed_attempt,
        )

    async def start(self) -> None:
        self._client = self._new_client()

    @property
    def clients_built(self) -> int:
        """How many clients this publisher has built: the first, and one per reconnection."""
        return self._clients_built

    def _new_client(self) -> Any:
        from google.pubsub_v1 import PublisherAsyncClient

        self._built_at = time.monotonic()
        self._clients_built += 1
        return PublisherAsyncClient()

    async def publish(self, request: PublishRequestBytes) -> Sequence[str]:
        from google.api_core import exceptions
        from google.pubsub_v1.types import PublishRequest, PublishResponse

        if self._client is None:
            raise RuntimeError("the publisher is stopped")
        wrapped = PublishRequest.wrap(PublishRequest.pb().FromString(request.data))
        deadline = time.monotonic() + self._settings.publish_timeout

        async def attempt() -> Any:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise exceptions.DeadlineExceeded("publish deadline passed")
            if self._stale is not None or self._replacing.locked():
                await self._replace_stale_client()  # or wait for the one under way
            if self._client is None:
                raise RuntimeError("the publisher is stopped")
            try:
                return await self._client.publish(
                    request=wrapped, retry=None, timeout=min(remaining, ATTEMPT_TIMEOUT_SECONDS)
                )
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this publish itself is being cancelled
                # Its channel was closed under it (replaced): an attempt to make again.
                raise exceptions.Cancelled("the connection to Pub/Sub was replaced") from None
            except exceptions.GoogleAPICallError as error:
                # Kept by the retry until it ends, the error must not keep the call's frames, and through
                # them the client: a channel's connection is only let go once the channel is freed.
                raise _without_frames(error) from None

        async with self._in_flight.hold(request.messages, request.size):
            task = asyncio.ensure_future(self._retry(attempt)())
            self._tasks.add(task)
            try:
                response = await task
            finally:
                self._tasks.discard(task)
        if self._reconnects:
            logger.info("Pub/Sub reachable again", extra={"reconnections": self._reconnects})
            self._reconnects = 0
        return PublishResponse.pb(response).message_ids

    def _after_failed_attempt(self, error: Exception) -> None:
        """Marks the client stale when its channel is waiting out gRPC's reconnect backoff."""
        import grpc

        client = self._client
        if client is None or client is self._stale or time.monotonic() - self._built_at < RECONNECT_INTERVAL_SECONDS:
            return
        try:
            state = client.transport.grpc_channel.get_state(try_to_connect=False)
        except Exception:  # noqa: BLE001 - a transport without a channel state: keep the client
            return
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            if self._reconnects == 0:  # once per outage, not once per attempt
                logger.warning(
                    "Pub/Sub connection lost: reconnecting", extra={"error": f"{type(error).__name__}: {error}"[:300]}
                )
            self._reconnects += 1
            self._stale = client

    async def _replace_stale_client(self) -> None:
        """Closes the stale client, then builds a new one.

        In that order: gRPC shares a connection (a subchannel, with its backoff) between the
        channels to one address as long as any of them exists, so a new client next to the old one
        would wait out the same backoff. Calls still running on the old one end, and are attempted
        again; attempts that start meanwhile wait for the new client.
        """
        async with self._replacing:
            stale = self._stale
            if stale is None or stale is not self._client:
                return
            self._client = self._stale = None
            with contextlib.suppress(Exception):
                await stale.transport.close()
            # gRPC frees the channel, and with it the connection and its backoff, only with the object;
            # the client and its transport refer to each other, so only a collection frees them.
            del stale
            gc.collect()
            self._client = self._new_client()

    async def stop(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._in_flight.wait_empty(), timeout=max(timeout, 0.0))
        if self._tasks:
            logger.warning(
                "publishes still running at the end of the grace: cancelled, not acknowledged",
                extra={"requests": len(self._tasks)},
            )
        for task in list(self._tasks):
            task.cancel()  # the caller sends their events again
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.transport.close()


def _without_frames(error: BaseException) -> BaseException:
    """`error` and the errors it wraps, without their tracebacks and chained causes."""
    for item in (error, getattr(error, "response", None)):
        if isinstance(item, BaseException):
            item.__traceback__ = item.__cause__ = item.__context__ = None
    return error


class LogPublisher:
    """Development mode: logs each message it would publish, and reports it published."""

    async def start(self) -> None:
        pass

    async def publish(self, request: PublishRequestBytes) -> Sequence[str]:
        from google.pubsub_v1.types import PublishRequest

        for message in PublishRequest.pb().FromString(request.data).messages:
            logger.info(
                "development mode: message not published",
                extra={
                    "topic": request.topic,
                    "attributes": dict(message.attributes),
                    "payload": json.loads(message.data),
                },
            )
        return ["dev-mode"] * request.messages

    async def stop(self, timeout: float) -> None:
        pass


def make_publisher(settings: Settings) -> Publisher:
    return LogPublisher() if settings.dev_mode else PubSubPublisher(settings)
