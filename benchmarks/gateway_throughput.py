"""Gateway throughput and CPU cost per event, against publishing the same messages without it, in one run.

Usage: python -m benchmarks.gateway_throughput [--events 60000] [--batch 1000] [--rounds 3] [--workers N]

Everything publishes into one real Pub/Sub emulator (started here), each side to a topic of its
own. The gateway side streams RecordEvents messages of `--batch` events of about 600 bytes
(serialized beforehand, so the client costs little) over one stream to a real
`python -m gateway_run`, and counts the time until the last response has acknowledged every
event. The limits publish the very bodies and attributes the gateway renders for those events
(benchmarks/_pubsub_limits.py): L_ps through google-cloud-pubsub's per-message client, L_raw
as whole PublishRequests of 1,000 through its generated client. Rounds alternate between the
three to share the noise (this machine is shared); the figures are medians.

CPU time per event is read from /proc around the gateway rounds, per process: the gateway's
main process, its workers, the emulator, and this client.

Targets: gateway / L_ps >= 1.2 (median of the rounds' ratios); gateway workers <= 60 µs per event.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator

import grpc

from benchmarks import _cpu, _pubsub_limits
from gateway_run import settings as gateway_settings
from gateway_run.identity import Authenticator
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


def rendered_messages(events: list[pb.Event], metadata: pb.RecordEventsRequestMetadata, env: dict) -> list[Outgoing]:
    """The messages the gateway publishes for `events`, rendered here by its own code (outside any timing)."""
    settings = gateway_settings.from_env({**os.environ, **env})
    context = Authenticator(settings).identify(metadata, None).context
    policy = policy_from(settings.allowlist)
    copies = [pb.Event.FromString(event.SerializeToString()) for event in events]
    messages = [prepare(e, context, policy, settings.max_message_bytes) for e in copies]
    assert all(isinstance(m, Outgoing) for m in messages)
    return messages  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events per round and side")
    parser.add_argument("--batch", type=int, default=1000, help="events per RecordEvents message")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="TELEMETRY_GATEWAY_WORKERS (default: its own)")
    parser.add_argument("--raw-in-flight", type=int, default=2, help="L_raw: PublishRequests in flight at once")
    parser.add_argument("--env", action="append", default=[], help="extra gateway setting NAME=VALUE (repeatable)")
    args = parser.parse_args()
    load_before = os.getloadavg()

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
        topics = {}
        for name in ("via-gateway", "per-message", "whole-requests"):
            topics[name] = publisher.topic_path(PROJECT, name)
            publisher.create_topic(name=topics[name])
            subscriber.create_subscription(
                name=subscriber.subscription_path(PROJECT, name + "-sub"), topic=topics[name]
            )

        env = {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "TELEMETRY_PUBSUB_TOPIC": "via-gateway",
            "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
            "LOG_LEVEL": "WARNING",
        }
        if args.workers is not None:
            env["TELEMETRY_GATEWAY_WORKERS"] = str(args.workers)
        env.update(item.split("=", 1) for item in args.env)
        gateway = start_gateway(env)
        settings = gateway_settings.from_env({**os.environ, **gateway.env})

        messages = rendered_messages(events, metadata, gateway.env)
        message_bytes = statistics.mean(len(m.data) for m in messages)
        attribute_count = statistics.mean(len(m.attributes) for m in messages)
        batches = [
            pb.RecordEventsRequest(
                events=pb.RecordEventsRequest.EventsPayload(events=events[start : start + args.batch])
            ).SerializeToString()
            for start in range(0, len(events), args.batch)
        ]
        metadata_request = pb.RecordEventsRequest(metadata=metadata).SerializeToString()
        meters = [
            *_cpu.gateway_meters(gateway.pid),
            _cpu.Meter("Pub/Sub emulator", lambda: _cpu.tree_cpu_seconds(emulator.process.pid)),
            _cpu.Meter("benchmark client", lambda: _cpu.cpu_seconds(os.getpid(), with_reaped_children=False)),
        ]

        # A warm-up of every side (the emulator's JIT, connections, worker start-up), not counted.
        warm_up = batches[:10]
        warm_up_events = sum(len(pb.RecordEventsRequest.FromString(raw).events.events) for raw in warm_up)
        gateway_round(gateway.address, metadata_request, warm_up, warm_up_events)
        _pubsub_limits.per_message_rate(topics["per-message"], messages[:warm_up_events])
        _pubsub_limits.whole_request_rate(topics["whole-requests"], messages[:warm_up_events], args.raw_in_flight)

        gateway_rates, ps_rates, raw_rates = [], [], []
        cpu_before = dict.fromkeys(_cpu.read_all(meters), 0.0)
        cpu_after = dict(cpu_before)
        for round_number in range(1, args.rounds + 1):
            before = _cpu.read_all(meters)
            via_gateway = gateway_round(gateway.address, metadata_request, batches, len(events))
            after = _cpu.read_all(meters)
            for name in before:
                cpu_after[name] += after[name] - before[name]
            gateway_rates.append(len(events) / via_gateway)
            ps_rates.append(_pubsub_limits.per_message_rate(topics["per-message"], messages))
            raw_rates.append(_pubsub_limits.whole_request_rate(topics["whole-requests"], messages, args.raw_in_flight))
            print(
                f"round {round_number}: gateway {gateway_rates[-1]:8.0f} events/s   L_ps {ps_rates[-1]:8.0f} msgs/s   "
                f"L_raw {raw_rates[-1]:8.0f} msgs/s   gateway/L_ps {gateway_rates[-1] / ps_rates[-1]:.2f}",
                flush=True,
            )

        ratio_ps = statistics.median(g / p for g, p in zip(gateway_rates, ps_rates, strict=True))
        ratio_raw = statistics.median(g / r for g, r in zip(gateway_rates, raw_rates, strict=True))
        counted = len(events) * args.rounds
        print()
        print(f"events per round      {len(events)} in messages of {args.batch}, one stream")
        print(
            f"event size            {event_bytes:.0f} bytes protobuf, {message_bytes:.0f} bytes published JSON, "
            f"{attribute_count:.1f} attributes"
        )
        print(f"gateway workers       {settings.workers} (cpus: {gateway_settings.default_workers()})")
        print(f"gateway               {statistics.median(gateway_rates):8.0f} events/s (median of {args.rounds})")
        print(f"L_ps                  {statistics.median(ps_rates):8.0f} msgs/s (per-message client)")
        print(
            f"L_raw                 {statistics.median(raw_rates):8.0f} msgs/s "
            f"(generated client, requests of 1,000, {args.raw_in_flight} in flight)"
        )
        print(f"gateway / L_ps        {ratio_ps:.2f} (median of the rounds' ratios; target >= 1.2)")
        print(f"gateway / L_raw       {ratio_raw:.2f}")
        print("CPU per event in the gateway rounds (target: gateway workers <= 60 µs):")
        for line in _cpu.per_event_lines(cpu_before, cpu_after, counted):
            print(line)
        load_after = os.getloadavg()
        print(f"load average          {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min; 2 shared cores)")
    finally:
        if gateway is not None:
            gateway.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
