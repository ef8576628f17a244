"""What Pub/Sub publishing alone reaches on this machine, to compare the gateway with.

- L_ps: google-cloud-pubsub's per-message client (`google.cloud.pubsub_v1.PublisherClient.publish`,
  one future per message, the library batching up to 1,000 messages a request);
- L_raw: the generated client (`google.pubsub_v1.PublisherClient.publish(request=...)`) sending
  whole PublishRequests of 1,000 raw-protobuf messages, `in_flight` requests at a time.

Both publish the very messages the gateway renders (same bodies, same attributes), prepared
before the clock starts, to a topic of their own on the same emulator.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent import futures

from gateway_run.pubsub_messages import Outgoing

REQUEST_MESSAGES = 1000


def per_message_rate(topic: str, messages: Sequence[Outgoing]) -> float:
    """L_ps in messages/s: every message through the per-message client, until every future resolved."""
    from google.cloud import pubsub_v1

    client = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=REQUEST_MESSAGES, max_bytes=9_500_000, max_latency=0.05
        )
    )
    try:
        started = time.perf_counter()
        pending = [client.publish(topic, m.data, **m.attributes) for m in messages]
        futures.wait(pending)
        elapsed = time.perf_counter() - started
        failed = sum(1 for future in pending if future.exception() is not None)
    finally:
        client.stop()
    if failed:
        raise SystemExit(f"L_ps: {failed} of {len(messages)} publishes failed")
    return len(messages) / elapsed


def whole_request_rate(topic: str, messages: Sequence[Outgoing], in_flight: int = 2) -> float:
    """L_raw in messages/s: PublishRequests of 1,000 through the generated client, `in_flight` at once."""
    from google.pubsub_v1 import PublisherClient
    from google.pubsub_v1.types import PublishRequest, PubsubMessage

    raw_request, raw_message = PublishRequest.pb(), PubsubMessage.pb()
    requests = [
        PublishRequest.wrap(
            raw_request(
                topic=topic,
                messages=[
                    raw_message(data=m.data, attributes=m.attributes)
                    for m in messages[start : start + REQUEST_MESSAGES]
                ],
            )
        )
        for start in range(0, len(messages), REQUEST_MESSAGES)
    ]
    client = PublisherClient()
    with futures.ThreadPoolExecutor(max_workers=in_flight) as pool:
        client.publish(request=requests[0])  # the connection, outside the clock
        started = time.perf_counter()
        answers = list(pool.map(lambda request: client.publish(request=request, timeout=60), requests))
        elapsed = time.perf_counter() - started
    published = sum(len(answer.message_ids) for answer in answers)
    if published != len(messages):
        raise SystemExit(f"L_raw: {published} of {len(messages)} messages published")
    return len(messages) / elapsed


def pipeline_limit(l_pg: float, l_raw: float) -> float:
    """S: what one machine does when claiming+marking and publishing share its cores, each at its limit."""
    return 1 / (1 / l_pg + 1 / l_raw)
