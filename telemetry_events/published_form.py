"""The form an event is published in: what the gateway writes to Pub/Sub and what `preview` shows.

Legacy int64 metadata (from older writers) is merged into `metadata` (double), then the
event is rendered as protojson. Both deployables render through here, so what an operator
previews on the instance is what consumers read from the topic.
"""

from __future__ import annotations

from telemetry_events import pb
from telemetry_events.protojson import message_to_json


def merge_legacy_metadata(event: pb.Event) -> None:
    """Moves `legacy_metadata` (int64, from older writers) into `metadata` (double), in place.

    A key present in both keeps its `metadata` value: a writer that set the newer field meant it.
    """
    parameters = event.parameters
    if not parameters.legacy_metadata:
        return
    metadata = parameters.metadata
    legacy = parameters.legacy_metadata
    for key in legacy:
        if key not in metadata:
            metadata[key] = float(legacy[key])
    parameters.ClearField("legacy_metadata")


def published_event_json(event: pb.Event) -> str:
    """The `event` part of a published message body, for an event already redacted (modified in place).

    Raises:
        telemetry_events.protojson.EncodeError: the event has no JSON form.
    """
    merge_legacy_metadata(event)
    return message_to_json(event)
