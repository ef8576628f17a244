"""Gateway throughput against publishing the same messages with google-cloud-pubsub directly, in one run.

Usage: python benchmarks/gateway_throughput.py [--events 60000] [--batch 1000] [--rounds 3] [--workers N]

Both sides publish into the same real Pub/Sub emulator (started here), each to its own topic
with a subscription. The gateway side streams RecordEvents messages of `--batch` events of
about 600 bytes each (serialized beforehand, so the client costs nearly nothing) to a real
`python -m gateway_run` and counts the time until the last response has acknowledged every
event. The direct side publishes the very bodies and attributes the gateway renders for those
events, from this process, with the gateway's publisher settings (batching, flow control),
and counts the time until every future has resolved. Rounds alternate between the two to
share the noise (this machine is shared); the figures are medians.

ratio = gateway events/s / direct events/s of the same round; the median over rounds is the
figure that counts. Target: at least 0.7.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from concurrent import futures

import grpc

from gateway_run import settings as gateway_settings
from gateway_run.identity import Authenticator
from gateway_run.publisher import PubSubSink
from gateway_run.pubsub_messages import Outgoing, prepare
from localdev.gateway import development_license, start_gateway
from localdev.pubsub_emulator import start_emulator
from telemetry_events import pb
from telemetry_events.ids import new_event_id
from telemetry_events.redaction import policy_from
from telemetry_events.rpc import RECORD_EVENTS

PROJECT = "gateway-benchmark"
METHOD = RECORD_EVENTS


def sample_event(number: int) -> pb.Event:
    """A realistic event of about 600 bytes: every field group set, private metadata to redact."""
    event = pb.Event(id=new_event_id(), feature="search.results", action="viewed" if number % 3 else "clicked")
    event.timestamp.GetCurrentTime()
    event.source.server.version = "6.1.2345"
    event.source.client.name = "VSCODE"
    event.source.client.version = "1.92.0"
    parameters = event.parameters
    parameters.version = 2
    for key, value in (("durationMs", 128.0 + number % 50), ("resultCount", float(number % 100)), ("page", 1.0)):
        parameters.metadata[key] = value
    parameters.metadata["recordsPrivateMetadataTranscript"] = float(number % 2)
    parameters.legacy_metadata["matchCount"] = number % 1000
    parameters.private_metadata.update({"query": "repo:^github.com/acme/secret$ password", "testField": "kept"})
    parameters.billing_metadata.product = "CODE_SEARCH"
    parameters.billing_metadata.category = "CORE"
    event.user.user_id = 1000 + number % 5000
    event.user.anonymous_user_id = f"anon-{number % 7919:08d}-0f3a-4c1e-9b2d"
    event.feature_flags.flags.update({"search-ranking": "true", "new-search-ui": "false", "cody-autocomplete": "true"})
    event.marketing_tracking.url = "https://example.com/search?utm_source=newsletter&utm_campaign=2024"
    event.interaction.trace_id = f"{number:032x}"
    event.interaction.interaction_id = f"interaction-{number:012d}"
    event.interaction.geolocation.country_code = "DE"
    return event


def gateway_round(address: str, metadata_request: bytes, batches: list[bytes], expected: int) -> float:
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        # Bytes in, bytes out: the client only copies what was serialized beforehand.
        call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)

        def requests() -> Iterator[bytes]:
            yield metadata_request
            yield from batches

        started = time.perf_counter()
        acknowledged = sum(len(pb.RecordEventsResponse.FromString(raw).succeeded_events) for raw in call(requests()))
        elapsed = time.perf_counter() - started
    if acknowledged != expected:
        raise SystemExit(f"the gateway acknowledged {acknowledged} of {expected} events")
    return elapsed


def direct_round(sink: PubSubSink, topic: str, messages: list[Outgoing]) -> float:
    started = time.perf_counter()
    pending = [sink.publish(topic, message.data, message.attributes) for message in messages]
    futures.wait(pending)
    elapsed = time.perf_counter() - started
    failed = sum(1 for future in pending if future.exception() is not None)
    if failed:
        raise SystemExit(f"{failed} direct publishes failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events per round and side")
    parser.add_argument("--batch", type=int, default=1000, help="events per RecordEvents message")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="TELEMETRY_GATEWAY_WORKERS (default: its own)")
    args = parser.parse_args()

    dev_license = development_license()
    instance_id = "benchmark-instance"
    license_key = dev_license.issue(instance_id=instance_id)
    metadata = pb.RecordEventsRequestMetadata(
        request_id="benchmark",
        identifier=pb.Identifier(
            licensed_instance=pb.Identifier.LicensedInstanceIdentifier(
                license_key=license_key, instance_id=instance_id, external_url="https://sourcegraph.example.com"
            )
        ),
    )
    events = [sample_event(n) for n in range(args.events)]
    event_bytes = statistics.mean(event.ByteSize() for event in events)

    emulator = start_emulator()
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host_port
    gateway = None
    try:
        from google.cloud import pubsub_v1

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for name in ("via-gateway", "direct"):
            topic = publisher.topic_path(PROJECT, name)
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, name + "-sub"), topic=topic)

        env = {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "TELEMETRY_PUBSUB_TOPIC": "via-gateway",
            "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
            "LOG_LEVEL": "WARNING",
        }
        if args.workers is not None:
            env["TELEMETRY_GATEWAY_WORKERS"] = str(args.workers)
        gateway = start_gateway(env)
        settings = gateway_settings.from_env({**os.environ, **gateway.env})

        # The direct side publishes exactly what the gateway renders (computed outside the timing).
        context = Authenticator(settings).identify(metadata, None).context
        policy = policy_from(settings.allowlist)
        copies = [pb.Event.FromString(event.SerializeToString()) for event in events]
        messages = [m for m in (prepare(e, context, policy, settings.max_message_bytes) for e in copies)]
        assert all(isinstance(m, Outgoing) for m in messages)
        message_bytes = statistics.mean(len(m.data) for m in messages)  # type: ignore[union-attr]
        batches = [
            pb.RecordEventsRequest(
                events=pb.RecordEventsRequest.EventsPayload(events=events[start : start + args.batch])
            ).SerializeToString()
            for start in range(0, len(events), args.batch)
        ]
        metadata_request = pb.RecordEventsRequest(metadata=metadata).SerializeToString()
        sink = PubSubSink(settings)
        direct_topic = publisher.topic_path(PROJECT, "direct")

        # A warm-up of both sides (the emulator's JIT, connections, worker start-up), not counted.
        warm_up = batches[:10]
        warm_up_events = sum(len(pb.RecordEventsRequest.FromString(raw).events.events) for raw in warm_up)
        gateway_round(gateway.address, metadata_request, warm_up, warm_up_events)
        direct_round(sink, direct_topic, messages[:warm_up_events])  # type: ignore[arg-type]

        gateway_rates, direct_rates = [], []
        for round_number in range(1, args.rounds + 1):
            via_gateway = gateway_round(gateway.address, metadata_request, batches, len(events))
            direct = direct_round(sink, direct_topic, messages)  # type: ignore[arg-type]
            gateway_rates.append(len(events) / via_gateway)
            direct_rates.append(len(events) / direct)
            print(
                f"round {round_number}: gateway {gateway_rates[-1]:8.0f} events/s   "
                f"direct {direct_rates[-1]:8.0f} events/s   ratio {gateway_rates[-1] / direct_rates[-1]:.2f}",
                flush=True,
            )
        sink.stop()

        gateway_median, direct_median = statistics.median(gateway_rates), statistics.median(direct_rates)
        ratio = statistics.median(g / d for g, d in zip(gateway_rates, direct_rates, strict=True))
        print()
        print(f"events per round      {len(events)} in messages of {args.batch}")
        print(f"event size            {event_bytes:.0f} bytes protobuf, {message_bytes:.0f} bytes published JSON")
        print(f"gateway workers       {settings.workers} (cpus: {gateway_settings.default_workers()})")
        print(f"via RecordEvents      {gateway_median:8.0f} events/s (median of {args.rounds})")
        print(f"direct publish        {direct_median:8.0f} events/s (median of {args.rounds})")
        print(f"ratio                 {ratio:.2f} (median of the rounds' ratios; target >= 0.70)")
    finally:
        if gateway is not None:
            gateway.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
