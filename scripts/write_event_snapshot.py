"""Writes tests/snapshots/event-<date>.binpb: a fully populated Event in today's wire format.

Run it whenever proto/ changes (python scripts/write_event_snapshot.py). Old snapshots are
never edited or deleted: tests/test_wire_schema.py parses every one of them, which is how a
change that would break payloads already persisted in queues gets caught.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from telemetry_events import pb

SNAPSHOTS = Path(__file__).resolve().parent.parent / "tests" / "snapshots"


def fully_populated_event() -> pb.Event:
    """An Event with every field, at every depth, set to a distinctive value."""
    event = pb.Event(id="0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e", feature="snapshot.feature", action="written")
    event.timestamp.FromSeconds(1_764_000_000)
    event.source.server.version = "6.1.0"
    event.source.client.name = "VSCODE"
    event.source.client.version = "1.2.3"
    parameters = event.parameters
    parameters.version = 3
    parameters.legacy_metadata["legacyCount"] = 9_007_199_254_740_993  # beyond a double's exact range
    parameters.metadata["durationMs"] = 12.5
    parameters.private_metadata.update({"query": "secret", "nested": {"list": [1, "two", True, None]}})
    parameters.billing_metadata.product = "cody"
    parameters.billing_metadata.category = "core"
    event.user.user_id = 42
    event.user.anonymous_user_id = "anon-1"
    event.user.sams_external_id = "sams-1"
    event.feature_flags.flags["flag"] = "true"
    tracking = event.marketing_tracking
    for field in tracking.DESCRIPTOR.fields:
        setattr(tracking, field.name, f"{field.name}-value")
    event.interaction.trace_id = "trace-1"
    event.interaction.interaction_id = "interaction-1"
    event.interaction.geolocation.country_code = "NZ"
    return event


def main() -> int:
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    path = SNAPSHOTS / f"event-{datetime.date.today().isoformat()}.binpb"
    path.write_bytes(fully_populated_event().SerializeToString(deterministic=True))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
