"""The nesting rule matches what protobuf really decodes in the gateway's frame.

The gateway parses each event inside RecordEventsRequest -> EventsPayload; an event is
valid only if that parse succeeds. The oracle here is the real parser, not a formula.
"""

from __future__ import annotations

import pytest
from google.protobuf.internal import encoder
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_events import pb
from telemetry_events.ids import new_event_id
from telemetry_events.nesting import MAX_PRIVATE_METADATA_DEPTH, NestedTooDeep, nesting_problem
from telemetry_events.validation import event_problems
from telemetry_export import event_logs
from telemetry_export.event_logs import log_line, translated_line


def _in_request(event: pb.Event) -> bytes:
    """`event`'s bytes framed as the gateway receives them: RecordEventsRequest.events.events[0]."""
    data = event.SerializeToString()
    payload = encoder.TagBytes(1, 2) + encoder._VarintBytes(len(data)) + data
    return encoder.TagBytes(2, 2) + encoder._VarintBytes(len(payload)) + payload


def _gateway_decodes(event: pb.Event) -> bool:
    try:
        pb.RecordEventsRequest.FromString(_in_request(event))
    except DecodeError:
        return False
    return True


def _event_with(chain: list[str], leaf: str, sibling_at: int | None) -> pb.Event:
    """An event whose private metadata nests along `chain` ("struct" or "list" steps) down to `leaf`."""
    event = pb.Event(id=new_event_id(), feature="search", action="submit")
    event.timestamp.GetCurrentTime()
    value = event.parameters.private_metadata.fields["top"]
    for depth, step in enumerate(chain):
        if step == "struct":
            fields = value.struct_value.fields
            if depth == sibling_at:
                fields["flat"].string_value = "a shallow sibling"
            value = fields["k"]
        else:
            values = value.list_value.values
            if depth == sibling_at:
                values.add().number_value = 1
            value = values.add()
    if leaf == "string":
        value.string_value = "leaf"
    elif leaf == "empty struct":
        value.struct_value.SetInParent()
    elif leaf == "empty list":
        value.list_value.SetInParent()
    # "unset": a Value with no kind
    return event


chains = st.lists(st.sampled_from(["struct", "list"]), min_size=20, max_size=52)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    chain=chains,
    leaf=st.sampled_from(["string", "empty struct", "empty list", "unset"]),
    sibling_at=st.none() | st.integers(0, 51),
)
def test_an_event_is_refused_exactly_when_the_gateway_could_not_decode_it(chain, leaf, sibling_at):
    event = _event_with(chain, leaf, sibling_at)
    problem = nesting_problem(event)
    assert (problem is None) == _gateway_decodes(event), (problem, len(chain))
    # Recording checks the rule while it walks the private metadata for event_logs (one walk, not two).
    assert _translation_refuses(event) == (problem is not None), len(chain)


@pytest.mark.parametrize("levels", [31, 32])
def test_the_boundary_is_the_gateway_frame_not_the_bare_event(levels):
    event = _event_with(["struct"] * levels, "string", None)
    pb.Event.FromString(event.SerializeToString())  # decodes on its own either way
    assert _gateway_decodes(event) == (levels == 31)
    assert (nesting_problem(event) is None) == (levels == 31)


def test_a_struct_nested_far_beyond_the_limit_is_refused_without_touching_the_encoder():
    # protobuf's encoder crashes the process on this one: the check must only walk it, and stop early.
    event = pb.Event(id=new_event_id(), feature="search", action="submit")
    event.timestamp.GetCurrentTime()
    struct = event.parameters.private_metadata
    for _ in range(30_000):
        struct = struct.fields["k"].struct_value
    problems = event_problems(event)
    assert len(problems) == 1
    assert "parameters.private_metadata nests more than" in problems[0]
    assert f"{MAX_PRIVATE_METADATA_DEPTH} message levels" in problems[0]
    assert "the gateway could not decode it" in problems[0]


def test_a_list_of_flat_values_is_as_deep_as_one_of_them():
    event = pb.Event(id=new_event_id(), feature="search", action="submit")
    event.timestamp.GetCurrentTime()
    event.parameters.private_metadata.update({"many": list(range(500)), "nested": {"a": {"b": [1, {"c": "d"}]}}})
    assert nesting_problem(event) is None
    assert _gateway_decodes(event)


@pytest.mark.parametrize("lists", [0, 1, 2])
@pytest.mark.parametrize("structs", range(26, 34))
def test_the_event_logs_translation_refuses_at_the_boundary_whatever_the_mix(lists, structs):
    # A Struct level costs three message levels and a list two: these mixes end a string's Struct at every
    # remaining depth around the limit, which drawn chains seldom hit exactly.
    event = _event_with(["list"] * lists + ["struct"] * structs, "string", None)
    assert _translation_refuses(event) == (nesting_problem(event) is not None)


def _translation_refuses(event: pb.Event) -> bool:
    """Whether the event_logs translation refuses `event`: log_line, the Python translation and the C reader agree."""
    refusals = []
    for translate in (log_line, translated_line):
        try:
            translate(event, event.id, "2026-12-01 00:00:00.000000+00", exportable=True)
        except NestedTooDeep:
            refusals.append(True)
        else:
            refusals.append(False)
    line = event_logs._event_log_wire.log_line(
        event.SerializeToString(), event.id, "2026-12-01 00:00:00.000000+00", True, MAX_PRIVATE_METADATA_DEPTH
    )
    assert line is not NotImplemented
    refusals.append(line is None)
    assert len(set(refusals)) == 1, refusals
    return refusals[0]
