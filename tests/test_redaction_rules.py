"""Redaction rules test_redaction.py left unpinned (found by mutation testing, docs/testing.md).

`redacted_bytes` is what recording queues. Its shortcut (nothing to strip: serialize as is) must be taken only
when the event has neither marketing tracking nor private metadata: an event carrying just one of them must still
lose it. The end-to-end leak test always plants both, so it cannot see that.
"""

from __future__ import annotations

import copy

from telemetry_events import pb
from telemetry_events.redaction import RedactionPolicy, parse_allowlist, policy_from, policy_from_env

ID = "0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e"


def _decoded(data: bytes) -> pb.Event:
    return pb.Event.FromString(data)


def test_an_event_with_only_marketing_tracking_is_queued_without_it():
    event = pb.Event(id=ID, feature="search", action="submit")
    event.marketing_tracking.url = "https://example.com/?utm=canary-mt"
    data = policy_from().redacted_bytes(event)
    assert b"canary-mt" not in data and not _decoded(data).HasField("marketing_tracking")
    assert event.HasField("marketing_tracking")  # the caller's event is left unchanged


def test_an_event_with_only_private_metadata_is_queued_without_what_is_not_allowed():
    event = pb.Event(id=ID, feature="search", action="submit")
    event.parameters.private_metadata.update({"query": "canary-pm", "lang": "go"})
    data = policy_from(parse_allowlist("search::submit::lang")).redacted_bytes(event)
    assert b"canary-pm" not in data
    assert dict(_decoded(data).parameters.private_metadata) == {"lang": "go"}
    assert dict(event.parameters.private_metadata) == {"query": "canary-pm", "lang": "go"}


def test_an_event_with_nothing_to_strip_is_queued_as_it_is():
    event = pb.Event(id=ID, feature="search", action="submit")
    event.parameters.metadata["n"] = 1
    assert policy_from().redacted_bytes(event) == event.SerializeToString(deterministic=True)


def test_empty_items_between_allowlist_entries_are_skipped_not_the_end():
    entries = parse_allowlist("search::submit::query,, ,blob::view::path")
    assert [(e.feature, e.action, set(e.keys)) for e in entries] == [
        ("search", "submit", {"query"}),
        ("blob", "view", {"path"}),
    ]


def test_entries_for_the_same_pair_add_up():
    policy = policy_from(parse_allowlist("search::submit::query,search::submit::lang,example::example::other"))
    assert policy.allowed_keys("search", "submit") == {"query", "lang"}
    assert policy.allowed_keys("example", "example") == {"testField", "other"}  # the built-in entry stays


def test_exact_and_wildcard_entries_add_up_and_a_pair_with_neither_allows_nothing():
    policy = RedactionPolicy({("search", "submit"): frozenset({"query"}), ("search", "*"): frozenset({"lang"})})
    assert policy.allowed_keys("search", "submit") == {"query", "lang"}
    assert policy.allowed_keys("search", "other") == {"lang"}
    assert policy.allowed_keys("blob", "view") == frozenset()


def test_no_allowlist_variable_is_the_built_in_allowlist_alone():
    assert policy_from_env({}) == policy_from() == RedactionPolicy({("example", "example"): frozenset({"testField"})})


def test_queued_bytes_are_deterministic_map_entries_in_key_order():
    # The exporter sends a stored row as it is only when it is exactly its own deterministic serialization
    # (functions/telemetry_export/outgoing.py): a row queued in another order would be rewritten at every export.
    event = pb.Event(id=ID, feature="search", action="submit")
    keys = [f"flag{n:02d}" for n in range(40)]
    for key in reversed(keys):
        event.feature_flags.flags[key] = "true"
    data = policy_from().redacted_bytes(event)
    assert data == event.SerializeToString(deterministic=True)
    positions = [data.index(key.encode()) for key in keys]
    assert positions == sorted(positions)


def _same_as_redact(policy: RedactionPolicy, arguments: dict) -> pb.Event:
    """`redacted_arguments` must be `redact` on the event the arguments build; returns the redacted event."""
    expected = policy.redact(pb.Event(**copy.deepcopy(arguments)))
    before = copy.deepcopy(arguments)
    redacted = pb.Event(**policy.redacted_arguments(arguments))
    assert arguments == before  # the caller's arguments are left unchanged
    assert redacted == expected
    return redacted


def test_redacting_arguments_replaces_every_non_string_an_allowlisted_key_holds():
    policy = policy_from(parse_allowlist("search::submit::n::b::z::l::o::s"))
    arguments = {
        "id": ID,
        "feature": "search",
        "action": "submit",
        "parameters": {"private_metadata": {"n": 1.5, "b": True, "z": None, "l": [1], "o": {"a": 1}, "s": "kept"}},
    }
    redacted = _same_as_redact(policy, arguments)
    assert dict(redacted.parameters.private_metadata) == {
        **dict.fromkeys("nbzlo", "redacted: allowlisted value was not a string"),
        "s": "kept",
    }


def test_redacting_arguments_without_parameters_drops_only_the_tracking():
    arguments = {"id": ID, "feature": "search", "action": "submit", "marketing_tracking": {"url": "canary-mt"}}
    redacted = _same_as_redact(policy_from(), arguments)
    assert not redacted.HasField("marketing_tracking") and redacted.feature == "search"


def test_redacting_arguments_without_a_feature_or_action_reads_them_as_empty_as_an_event_does():
    # Recording refuses such events before redacting; the rule still says what an Event would say.
    policy = RedactionPolicy({("", ""): frozenset({"k"})})
    redacted = _same_as_redact(policy, {"id": ID, "parameters": {"private_metadata": {"k": "v", "other": "x"}}})
    assert dict(redacted.parameters.private_metadata) == {"k": "v"}
