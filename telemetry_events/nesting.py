"""How deep an event may nest and still be decoded by the gateway.

Protobuf refuses to decode a message nested more than 100 levels below the top one (upb's
`MaxDepth`, the C++ and Java runtimes' default recursion limit). The gateway decodes each
event inside `RecordEventsRequest -> EventsPayload`, two levels deeper than the event itself,
so an event that decodes on its own may still be refused there, and with it the whole
message it travels in. Among an event's known fields only private metadata (a `Struct`)
nests without bound: its depth is what is checked.
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from telemetry_events import pb

# Messages protobuf decodes in one chain: the top one and 100 below it.
MAX_DECODED_DEPTH = 101
# RecordEventsRequest, EventsPayload, Event and EventParameters hold private metadata at the 5th level.
_ABOVE_PRIVATE_METADATA = 4
# Levels private metadata may use, counting itself (Struct -> fields entry -> Value -> Struct ...).
MAX_PRIVATE_METADATA_DEPTH = MAX_DECODED_DEPTH - _ABOVE_PRIVATE_METADATA


class NestedTooDeep(ValueError):
    """Private metadata nests deeper than the gateway can decode."""

    def __init__(self) -> None:
        super().__init__(
            f"parameters.private_metadata nests more than {MAX_PRIVATE_METADATA_DEPTH} message levels deep"
            f" (Struct, entry, Value, ...): the gateway could not decode it (protobuf decodes at most 100 levels"
            f" of nesting, counted from RecordEventsRequest)"
        )


def nesting_problem(event: pb.Event) -> str | None:
    """What is wrong with how deep `event` nests, or None when the gateway can decode it."""
    parameters = event.parameters
    if not parameters.HasField("private_metadata"):
        return None
    try:
        # A walk, not ByteSize(): protobuf's own encoder crashes the process on a Struct nested
        # some 20,000 levels deep, which a caller can build in memory.
        check_struct_depth(parameters.private_metadata, MAX_PRIVATE_METADATA_DEPTH)
    except NestedTooDeep as error:
        return str(error)
    return None


def check_struct_depth(struct: struct_pb2.Struct, budget: int) -> None:
    """Raises NestedTooDeep when `struct` spans more than `budget` message levels, counting itself.

    Stops as soon as it knows; only nested Structs and lists are followed.
    """
    if budget < 1:
        raise NestedTooDeep
    for value in struct.fields.values():
        _check_value_depth(value, budget - 2)  # an entry, then its Value


def _check_value_depth(value: struct_pb2.Value, budget: int) -> None:
    if budget < 1:
        raise NestedTooDeep
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        check_struct_depth(value.struct_value, budget - 1)
    elif kind == "list_value":
        if budget < 2:
            raise NestedTooDeep
        for item in value.list_value.values:
            _check_value_depth(item, budget - 2)
