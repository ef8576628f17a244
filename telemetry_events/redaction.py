"""The redaction policy, applied before an event is queued and again at the gateway.

Fail-closed: marketing tracking never leaves an instance, and private metadata leaves only
for allowlisted (feature, action) pairs, reduced to their allowlisted top-level string keys.
Everything else an event carries (numeric metadata, user, flags, interaction, billing,
source) is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2

from telemetry_events import pb
from telemetry_events.envvars import BOTH, SettingError, Text
from telemetry_events.validation import name_problem

ALLOWLIST = Text(
    "TELEMETRY_ALLOWLIST",
    "",
    meaning=(
        "extra redaction allowlist, `feature::action::key1::key2,...` (`action` may be `*`), on top of the built-in "
        "`example::example::testField`; give both deployables the same"
    ),
    read_by=BOTH,
)
ANY_ACTION = "*"
NOT_A_STRING = "redacted: allowlisted value was not a string"

_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class AllowlistEntry:
    feature: str
    action: str
    keys: frozenset[str]


@dataclass(frozen=True)
class RedactionPolicy:
    """Which private metadata keys may leave, per (feature, action); `*` matches any action."""

    entries: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def allowed_keys(self, feature: str, action: str) -> frozenset[str]:
        exact = self.entries.get((feature, action), frozenset())
        wildcard = self.entries.get((feature, ANY_ACTION), frozenset())
        return exact | wildcard if wildcard else exact

    def redact(self, event: pb.Event) -> pb.Event:
        """Strips from `event`, in place, everything that must not leave; returns it."""
        if event.HasField("marketing_tracking"):
            event.ClearField("marketing_tracking")
        parameters = event.parameters
        if parameters.HasField("private_metadata"):
            keys = self.allowed_keys(event.feature, event.action)
            if not keys:
                parameters.ClearField("private_metadata")
            else:
                _keep_string_keys(parameters.private_metadata, keys)
        return event

    def redacted_bytes(self, event: pb.Event) -> bytes:
        """The wire bytes of `event` after redaction, holding only fields the schema knows.

        Fail-closed: unknown fields at every level (inside Struct values and map entries too)
        are dropped, and so is a known field sent with the wrong wire type (protobuf keeps it
        as an unknown field, where `HasField` and so redaction cannot see it). `event` itself
        is left unchanged. Deterministic (map entries in key order), as the exporter serializes
        what it sends: a row stored this way is sent as it is, and never rewritten when exported.
        """
        redacted = pb.Event()
        redacted.CopyFrom(event)
        redacted.DiscardUnknownFields()  # recursive
        return self.redact(redacted).SerializeToString(deterministic=True)

    def redacted_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The same rules on an Event's constructor arguments: `pb.Event(**result)` is the redacted event.

        Built from known fields only, it holds nothing redaction did not examine. `arguments`
        itself is left unchanged.
        """
        redacted = dict(arguments)
        redacted.pop("marketing_tracking", None)
        parameters = redacted.get("parameters")
        if parameters is not None and "private_metadata" in parameters:
            parameters = redacted["parameters"] = dict(parameters)
            keys = self.allowed_keys(redacted.get("feature", ""), redacted.get("action", ""))
            if keys:
                # Built as messages: a dict would go through Struct.update, a Python loop per key.
                parameters["private_metadata"] = struct_pb2.Struct(
                    fields={
                        key: struct_pb2.Value(string_value=value if type(value) is str else NOT_A_STRING)
                        for key, value in parameters["private_metadata"].items()
                        if key in keys
                    }
                )
            else:
                del parameters["private_metadata"]
        return redacted


# Shipped with the product so that the mechanism is always exercised end to end.
BUILTIN_ALLOWLIST = (AllowlistEntry("example", "example", frozenset({"testField"})),)


def parse_allowlist(value: str, variable: str = ALLOWLIST.name) -> tuple[AllowlistEntry, ...]:
    """Parses `feature::action::key1::key2,...`; raises SettingError naming `variable`."""
    entries = []
    for position, item in enumerate(value.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        parts = [part.strip() for part in item.split("::")]
        if len(parts) < 3:
            raise SettingError(f"{variable} entry {position} {item!r} needs feature::action::key (at least one key)")
        feature, action, keys = parts[0], parts[1], parts[2:]
        problem = name_problem("feature", feature) or (None if action == ANY_ACTION else name_problem("action", action))
        if problem:
            raise SettingError(f"{variable} entry {position} {item!r}: {problem}")
        bad_keys = [key for key in keys if not _KEY.fullmatch(key)]
        if bad_keys:
            raise SettingError(f"{variable} entry {position} {item!r}: invalid key {bad_keys[0]!r}")
        entries.append(AllowlistEntry(feature, action, frozenset(keys)))
    return tuple(entries)


def policy_from(extra: tuple[AllowlistEntry, ...] = ()) -> RedactionPolicy:
    """The built-in allowlist extended by `extra`."""
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for entry in BUILTIN_ALLOWLIST + extra:
        pair = (entry.feature, entry.action)
        merged[pair] = merged.get(pair, frozenset()) | entry.keys
    return RedactionPolicy(merged)


def policy_from_env(env: Mapping[str, str]) -> RedactionPolicy:
    return policy_from(parse_allowlist(ALLOWLIST.read(env)))


def _keep_string_keys(metadata, keys: frozenset[str]) -> None:  # metadata: google.protobuf.Struct
    for key in list(metadata.fields):
        if key not in keys:
            del metadata.fields[key]
        elif metadata.fields[key].WhichOneof("kind") != "string_value":
            metadata.fields[key].string_value = NOT_A_STRING
