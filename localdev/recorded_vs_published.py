"""One event as recorded locally (`event_logs`, unredacted) beside the same event as published.

Each `event_logs` column that came from the event is paired with the published field it came
from, so what redaction removed reads at a glance: the published column says REMOVED. Fields
that exist on one side only (the local `telemetry.exportable` marker; the published interaction)
are left out: they are not redaction's doing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

REMOVED = "REMOVED"

# event_logs columns from marketing tracking, and the published field each came from.
_TRACKING = (
    ("url", "url"),
    ("first_source_url", "firstSourceUrl"),
    ("last_source_url", "lastSourceUrl"),
    ("cohort_id", "cohortId"),
    ("referrer", "referrer"),
    ("device_session_id", "deviceSessionId"),
)
_LOCAL_ONLY_METADATA = ("telemetry.exportable",)


class Pair(NamedTuple):
    column: str  # the event_logs column (and key, for JSON columns)
    recorded: str
    published: str  # the published value, or REMOVED


def pairs(recorded: Mapping[str, Any], published: Mapping[str, Any]) -> list[Pair]:
    """Each recorded value beside its published counterpart, in the order a reader scans an event.

    Args:
        recorded: one event_logs row, by column name (JSON columns decoded).
        published: the `event` part of the published message body, decoded.
    """
    parameters = published.get("parameters", {})
    user = published.get("user", {})
    client = published.get("source", {}).get("client")
    found: list[Pair] = [
        Pair("name", recorded["name"], f"{published.get('feature', '')}.{published.get('action', '')}"),
    ]
    if recorded.get("client") is not None:
        shown = None if client is None else " ".join(filter(None, (client.get("name"), client.get("version"))))
        found.append(_pair("client", recorded["client"], shown))
    if recorded.get("user_id"):
        found.append(_pair("user_id", recorded["user_id"], user.get("userId")))
    found.append(_pair("anonymous_user_id", recorded["anonymous_user_id"], user.get("anonymousUserId")))
    for key, value in sorted((recorded.get("argument") or {}).items()):
        found.append(_pair(f"argument.{key}", value, parameters.get("privateMetadata", {}).get(key)))
    for key, value in sorted((recorded.get("public_argument") or {}).items()):
        if key not in _LOCAL_ONLY_METADATA:
            found.append(_pair(f"public_argument.{key}", value, parameters.get("metadata", {}).get(key)))
    for key, value in sorted((recorded.get("feature_flags") or {}).items()):
        found.append(_pair(f"feature_flags.{key}", value, published.get("featureFlags", {}).get("flags", {}).get(key)))
    if recorded.get("billing_product_category") is not None:
        billing = parameters.get("billingMetadata")
        shown = None if billing is None else f"{billing.get('product', '')}:{billing.get('category', '')}"
        found.append(_pair("billing_product_category", recorded["billing_product_category"], shown))
    tracking = published.get("marketingTracking", {})
    for column, field in _TRACKING:
        if recorded.get(column):
            found.append(_pair(column, recorded[column], tracking.get(field)))
    return found


def _pair(column: str, recorded: Any, published: Any) -> Pair:
    return Pair(column, _text(recorded), REMOVED if published is None else _text(published))


def _text(value: Any) -> str:
    """A value as a reader expects it: whole numbers without `.0` (jsonb and protojson differ there)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value  # protojson writes int64 (a user ID) as a string: it reads the same as the number
    return json.dumps(value, sort_keys=True)


def side_by_side(event_id: str, pairs_: Sequence[Pair], width: int = 34) -> str:
    """An event's pairs as three aligned columns under their headings; values are cut to `width` characters."""
    header = ("event_logs column", "recorded (event_logs, unredacted)", "published (Pub/Sub)")
    rows = [(column, _cut(recorded, width), _cut(published, width)) for column, recorded, published in pairs_]
    first = max(len(row[0]) for row in (header, *rows))
    second = max(len(row[1]) for row in (header, *rows))
    lines = [f"event {event_id}"]
    lines.extend(
        f"  {column.ljust(first)}  {recorded.ljust(second)}  {published}"
        for column, recorded, published in (header, *rows)
    )
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
