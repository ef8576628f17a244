"""Topics, subscriptions and acknowledged pulls on a Pub/Sub emulator: what the tests and the demo share.

Clients are bound to one emulator when built (google-cloud-pubsub reads PUBSUB_EMULATOR_HOST once,
at construction), so an admin keeps talking to its emulator whatever the variable says later.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def emulator_host(host_port: str | None) -> Iterator[None]:
    """PUBSUB_EMULATOR_HOST set to `host_port` (None: left as it is) while clients are built."""
    if host_port is None:
        yield
        return
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host_port
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


class PubSubAdmin:
    """A publisher and a subscriber client on one emulator (`host_port`, or PUBSUB_EMULATOR_HOST)."""

    def __init__(self, host_port: str | None = None) -> None:
        from google.cloud import pubsub_v1

        self.host_port = host_port or os.environ.get("PUBSUB_EMULATOR_HOST", "")
        with emulator_host(host_port):
            self.publisher = pubsub_v1.PublisherClient()
            self.subscriber = pubsub_v1.SubscriberClient()

    def create(
        self, project: str, topic_id: str, subscription_id: str, ack_deadline_seconds: int = 10
    ) -> tuple[str, str]:
        """Creates the topic and a subscription taking everything it will carry; returns both paths."""
        topic = self.publisher.create_topic(name=self.publisher.topic_path(project, topic_id)).name
        subscription = self.subscriber.create_subscription(
            name=self.subscriber.subscription_path(project, subscription_id),
            topic=topic,
            ack_deadline_seconds=ack_deadline_seconds,
        ).name
        return topic, subscription

    def pull_once(self, subscription: str, max_messages: int = 1000, timeout: float = 5.0) -> list[Any]:
        """One pull, acknowledged; the pulled `PubsubMessage`s. The emulator holds an empty pull open until
        `timeout`, which then counts as nothing pulled, as does an emulator that is down."""
        from google.api_core.exceptions import DeadlineExceeded, ServiceUnavailable

        try:
            response = self.subscriber.pull(
                request={"subscription": subscription, "max_messages": max_messages}, timeout=timeout, retry=None
            )
        except (DeadlineExceeded, ServiceUnavailable):
            return []
        received = response.received_messages
        if received:
            self.subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]})
        return [item.message for item in received]
