"""Realistic events for demos, tests and benchmarks, sensitive fields included on purpose.

Every kind of field redaction must handle appears: private metadata on allowlisted and
other events, marketing tracking, users, feature flags, interactions and billing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from google.protobuf.timestamp_pb2 import Timestamp

from telemetry_events import pb
from telemetry_events.ids import new_event_id

_FEATURES = (
    ("search", "submit"),
    ("search", "resultClicked"),
    ("blob", "view"),
    ("codeintel.hover", "shown"),
    ("cody.chat", "submit"),
    ("cody.completion", "accepted"),
    ("repo.settings", "saved"),
    ("example", "example"),
)
_CLIENTS = ("VSCODE", "JETBRAINS", "WEB", "CLI")
_SECRET_QUERIES = ("password=hunter2 repo:acme/payroll", "AKIAIOSFODNN7EXAMPLE", "select * from users")


def sample_events(count: int, seed: int | None = None) -> Iterator[pb.Event]:
    """Yields `count` fresh events, each with a new UUID v7 and the current time."""
    rng = random.Random(seed)
    now = Timestamp()
    now.GetCurrentTime()
    for n in range(count):
        feature, action = _FEATURES[n % len(_FEATURES)]
        event = pb.Event(id=new_event_id(), feature=feature, action=action)
        event.timestamp.CopyFrom(now)
        event.source.server.version = "6.1.0"
        if rng.random() < 0.8:
            event.source.client.name = rng.choice(_CLIENTS)
            event.source.client.version = f"1.{rng.randint(0, 40)}.0"
        parameters = event.parameters
        parameters.version = 1
        parameters.metadata["durationMs"] = round(rng.uniform(1, 900), 2)
        parameters.metadata["resultCount"] = rng.randint(0, 500)
        if n % 5 == 0:
            parameters.legacy_metadata["legacyCount"] = rng.randint(0, 10)
        if n % 7 == 0:
            parameters.metadata["recordsPrivateMetadataTranscript"] = 1
        parameters.private_metadata.update(
            {
                "query": rng.choice(_SECRET_QUERIES),
                "repository": f"github.com/acme/service-{rng.randint(1, 99)}",
                "testField": f"allowed value {n}",
                "count": rng.randint(0, 9),
            }
        )
        if n % 3 == 0:
            parameters.billing_metadata.product = "cody"
            parameters.billing_metadata.category = "core"
        if rng.random() < 0.9:
            event.user.user_id = rng.randint(1, 5_000)
        event.user.anonymous_user_id = f"anon-{rng.getrandbits(64):016x}"
        event.feature_flags.flags["new-search"] = rng.choice(("true", "false"))
        tracking = event.marketing_tracking
        tracking.url = f"https://sourcegraph.example.com/search?q={rng.choice(_SECRET_QUERIES)}"
        tracking.first_source_url = "https://ads.example.net/campaign?utm_source=newsletter"
        tracking.cohort_id = f"cohort-{rng.randint(1, 12)}"
        tracking.referrer = "https://www.google.com/"
        tracking.device_session_id = f"session-{rng.getrandbits(32):08x}"
        event.interaction.trace_id = f"{rng.getrandbits(128):032x}"
        event.interaction.geolocation.country_code = rng.choice(("US", "DE", "JP", "BR"))
        yield event
