"""Hypothesis strategies for events: valid ones whose content is as odd as a careless or hostile caller makes it
(`valid_events`), and any event whatsoever (`any_events`)."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from telemetry_events import pb
from telemetry_events.ids import new_event_id

# Text COPY must escape, text Postgres cannot hold (NUL), JSON escapes, and non-ASCII.
odd_texts = st.text(
    alphabet=st.sampled_from(list("ab\\\t\n\r\x00\x01\"'/ é€😀")) | st.characters(codec="utf-8"),
    max_size=12,
) | st.sampled_from(["", "\\N", "\\u0000", "a\\u0000b", "\\\\x00"])
int64s = st.integers(-(2**63), 2**63 - 1)
doubles = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0, 2.0**53 + 1, 1e300])
finite_doubles = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1.0, 1e300])
names = st.sampled_from(["search", "cody.chat", "a-b", "example", "repo.settings"])
struct_values = st.recursive(
    st.none() | st.booleans() | finite_doubles | odd_texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_texts, inner, max_size=3),
    max_leaves=12,
)


@st.composite
def valid_events(draw: st.DrawFn, finite: bool = False) -> pb.Event:
    """A valid event (UUID, names, timestamp in range); with `finite`, no NaN or infinity anywhere."""
    event = pb.Event(id=new_event_id(), feature=draw(names), action=draw(names))
    event.timestamp.seconds = draw(st.integers(-62_135_596_800, 253_402_300_799) | st.just(1_767_225_600))
    event.timestamp.nanos = draw(st.integers(0, 999_999_999) | st.sampled_from([0, 123_000]))
    numbers = finite_doubles if finite else doubles
    if draw(st.booleans()):
        event.source.server.version = draw(odd_texts)
    if draw(st.booleans()):
        event.source.client.SetInParent()
        if draw(st.booleans()):
            event.source.client.name = draw(odd_texts)
        if draw(st.booleans()):
            event.source.client.version = draw(odd_texts)
    parameters = event.parameters
    parameters.version = draw(st.integers(-(2**31), 2**31 - 1))
    parameters.legacy_metadata.update(draw(st.dictionaries(odd_texts, int64s, max_size=3)))
    parameters.metadata.update(draw(st.dictionaries(odd_texts, numbers, max_size=3)))
    if draw(st.booleans()):
        parameters.private_metadata.update(draw(st.dictionaries(odd_texts, struct_values, max_size=4)))
        parameters.private_metadata.SetInParent()
        if not finite and draw(st.booleans()):
            parameters.private_metadata.fields["odd"].number_value = draw(st.sampled_from([math.inf, math.nan]))
    _add_context(draw, event, odd_texts)
    return event


any_texts = st.text(max_size=20)
extreme_doubles = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1e300, 5e-324, 2.0**53 + 1, 1e-6, 9.99e-7, 1e21, 9.999999999999999e20, 1e16, 1e-5, 12.0]
)
any_json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | any_texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_texts, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def any_events(draw: st.DrawFn, nan: bool = True) -> pb.Event:
    """Any event whatsoever: IDs and names any text, timestamps beyond protojson's years 1 to 9999, extreme
    doubles. Without `nan`, no NaN anywhere (a message holding one is not equal to itself)."""
    event = pb.Event(id=draw(any_texts), feature=draw(any_texts), action=draw(any_texts))
    if draw(st.booleans()):
        # Including values outside protojson's range (years 1 to 9999), which both must refuse.
        event.timestamp.seconds = draw(st.integers(-70_000_000_000, 260_000_000_000))
        event.timestamp.nanos = draw(st.integers(0, 999_999_999) | st.sampled_from([0, 1_000_000, 123_000]))
    if draw(st.booleans()):
        event.source.server.version = draw(any_texts)
        if draw(st.booleans()):
            event.source.client.name = draw(any_texts)
            if draw(st.booleans()):
                event.source.client.version = draw(any_texts)
    parameters = event.parameters
    parameters.version = draw(st.integers(-(2**31), 2**31 - 1))
    parameters.legacy_metadata.update(draw(st.dictionaries(any_texts, int64s, max_size=4)))
    numbers = extreme_doubles if nan else extreme_doubles.filter(lambda value: value == value)
    parameters.metadata.update(draw(st.dictionaries(any_texts, numbers, max_size=4)))
    if draw(st.booleans()):
        parameters.private_metadata.update(draw(st.dictionaries(any_texts, any_json_values, max_size=4)))
    if draw(st.booleans()):
        nonfinite = [math.inf, math.nan] if nan else [math.inf]
        parameters.private_metadata.fields["nonfinite"].number_value = draw(st.sampled_from(nonfinite))
    _add_context(draw, event, any_texts)
    return event


def _add_context(draw: st.DrawFn, event: pb.Event, texts: st.SearchStrategy[str]) -> None:
    """Billing, user, feature flags, marketing tracking and interaction, each present or not."""
    parameters = event.parameters
    if draw(st.booleans()):
        parameters.billing_metadata.SetInParent()
        parameters.billing_metadata.product = draw(texts)
        parameters.billing_metadata.category = draw(texts)
    if draw(st.booleans()):
        event.user.SetInParent()
        if draw(st.booleans()):
            event.user.user_id = draw(int64s)
        if draw(st.booleans()):
            event.user.anonymous_user_id = draw(texts)
        if draw(st.booleans()):
            event.user.sams_external_id = draw(texts)
    if draw(st.booleans()):
        event.feature_flags.SetInParent()
        event.feature_flags.flags.update(draw(st.dictionaries(texts, texts, max_size=3)))
    if draw(st.booleans()):
        event.marketing_tracking.SetInParent()
        for name in pb.EventMarketingTracking.DESCRIPTOR.fields_by_name:
            if draw(st.booleans()):
                setattr(event.marketing_tracking, name, draw(texts))
    if draw(st.booleans()):
        event.interaction.SetInParent()
        if draw(st.booleans()):
            event.interaction.trace_id = draw(texts)
        if draw(st.booleans()):
            event.interaction.geolocation.country_code = draw(texts)
