"""The redaction policy: fail-closed, allowlist-driven, applied to a copy."""

from __future__ import annotations

import pytest

from telemetry_events import pb
from telemetry_events.envvars import SettingError
from telemetry_events.redaction import NOT_A_STRING, parse_allowlist, policy_from, policy_from_env


def _event(feature: str = "search", action: str = "submit") -> pb.Event:
    event = pb.Event(id="0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e", feature=feature, action=action)
    event.parameters.metadata["count"] = 3
    event.parameters.legacy_metadata["old"] = 4
    event.parameters.private_metadata.update({"testField": "keep", "query": "secret", "number": 7, "obj": {"a": 1}})
    event.parameters.billing_metadata.product = "cody"
    event.marketing_tracking.url = "https://example.com/?q=secret"
    event.marketing_tracking.cohort_id = "cohort"
    event.user.user_id = 5
    event.feature_flags.flags["f"] = "true"
    event.interaction.trace_id = "t"
    event.source.client.name = "WEB"
    return event


def test_marketing_tracking_and_private_metadata_never_leave_by_default():
    redacted = policy_from().redact(_event())
    assert not redacted.HasField("marketing_tracking")
    assert not redacted.parameters.HasField("private_metadata")


def test_everything_else_is_kept():
    original = _event()
    redacted = policy_from().redact(_event())
    for name in ("user", "feature_flags", "interaction", "source"):
        assert getattr(redacted, name) == getattr(original, name)
    assert redacted.parameters.metadata == original.parameters.metadata
    assert redacted.parameters.legacy_metadata == original.parameters.legacy_metadata
    assert redacted.parameters.billing_metadata == original.parameters.billing_metadata


def test_the_builtin_allowlist_keeps_only_example_test_field():
    redacted = policy_from().redact(_event("example", "example"))
    assert dict(redacted.parameters.private_metadata) == {"testField": "keep"}
    assert not redacted.HasField("marketing_tracking")


def test_allowlisted_non_string_values_are_replaced_not_passed_through():
    policy = policy_from(parse_allowlist("search::submit::number::obj::testField"))
    kept = policy.redact(_event()).parameters.private_metadata
    assert dict(kept) == {"testField": "keep", "number": NOT_A_STRING, "obj": NOT_A_STRING}


def test_a_wildcard_action_allows_the_feature_for_any_action():
    policy = policy_from_env({"TELEMETRY_ALLOWLIST": "search::*::query"})
    assert dict(policy.redact(_event("search", "other")).parameters.private_metadata) == {"query": "secret"}
    assert not policy.redact(_event("blob", "submit")).parameters.HasField("private_metadata")


def test_exact_and_wildcard_entries_combine():
    policy = policy_from_env({"TELEMETRY_ALLOWLIST": "search::*::query, search::submit::testField"})
    assert set(policy.redact(_event()).parameters.private_metadata) == {"query", "testField"}


def test_redacted_bytes_leave_the_event_untouched():
    event = _event()
    before = event.SerializeToString()
    redacted = pb.Event.FromString(policy_from().redacted_bytes(event))
    assert event.SerializeToString() == before
    assert not redacted.HasField("marketing_tracking")


def test_redacted_bytes_of_a_clean_event_are_its_own_bytes():
    event = pb.Event(id="x", feature="search", action="submit")
    assert policy_from().redacted_bytes(event) == event.SerializeToString()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("search::submit", "entry 1 'search::submit' needs feature::action::key"),
        ("ok::fine::a,Bad::x::k", "entry 2 'Bad::x::k': feature 'Bad' must be"),
        ("search::*::bad key", "invalid key 'bad key'"),
        ("search::1::k", "action '1' must be"),
    ],
)
def test_malformed_allowlists_are_rejected_naming_the_variable(value, message):
    with pytest.raises(SettingError) as raised:
        policy_from_env({"TELEMETRY_ALLOWLIST": value})
    assert str(raised.value).startswith("TELEMETRY_ALLOWLIST ")
    assert message in str(raised.value)
