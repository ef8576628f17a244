"""Event IDs, validation messages and export modes: the rules both deployables share."""

from __future__ import annotations

import time
import uuid

import pytest

from telemetry_events import pb
from telemetry_events.envvars import SettingError
from telemetry_events.export_mode import ExportMode, ExportScope, scope_from_env
from telemetry_events.ids import canonical_uuid, new_event_id
from telemetry_events.validation import InvalidEventError, event_problems, validate_event


def test_event_ids_are_uuid_v7_carrying_the_current_millisecond():
    before = time.time_ns() // 1_000_000
    parsed = uuid.UUID(new_event_id())
    after = time.time_ns() // 1_000_000
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_event_ids_minted_in_a_row_are_unique_and_sorted():
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_canonical_uuid_gives_one_spelling_per_id():
    value = "0194F3A27C1E7B2A9D3E5F6A7B8C9D0E"
    assert canonical_uuid(value) == "0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e"
    assert canonical_uuid(canonical_uuid(value)) == canonical_uuid(value)
    with pytest.raises(ValueError):
        canonical_uuid("not-a-uuid")


def _event(**fields) -> pb.Event:
    event = pb.Event(id=new_event_id(), feature="search", action="submit")
    event.timestamp.GetCurrentTime()
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def test_a_complete_event_is_valid():
    assert event_problems(_event()) == []
    validate_event(_event(feature="cody.chat", action="submit-Now"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"feature": ""}, "feature is required"),
        ({"action": ""}, "action is required"),
        ({"feature": "Search"}, "feature 'Search' must be a lowercase letter followed by"),
        ({"action": "a"}, "action 'a' must be a lowercase letter followed by"),
        ({"feature": "search1"}, "feature 'search1' must be"),
        ({"action": "sub_mit"}, "action 'sub_mit' must be"),
        ({"feature": "f" * 65}, "is 65 characters long, at most 64 allowed"),
        ({"id": ""}, "id is required"),
        ({"id": "123"}, "id '123' is not a UUID"),
    ],
)
def test_each_broken_rule_is_named_precisely(fields, message):
    problems = event_problems(_event(**fields))
    assert len(problems) == 1
    assert message in problems[0]


def test_a_missing_timestamp_is_reported_with_every_other_problem():
    event = pb.Event(id="x", feature="", action="ok-action")
    with pytest.raises(InvalidEventError) as raised:
        validate_event(event)
    assert str(raised.value) == "id 'x' is not a UUID; timestamp is required; feature is required"


def test_a_64_character_name_is_allowed():
    assert event_problems(_event(feature="f" * 64)) == []


def test_export_scope_defaults_to_all():
    assert scope_from_env({}) == ExportScope(ExportMode.ALL)
    assert scope_from_env({}).exports("anything")


def test_listed_mode_exports_only_listed_features():
    scope = scope_from_env({"TELEMETRY_EXPORT_MODE": "listed", "TELEMETRY_EXPORT_FEATURES": "search, cody.chat"})
    assert scope.exports("search") and scope.exports("cody.chat")
    assert not scope.exports("blob")


def test_disabled_mode_exports_nothing():
    assert not scope_from_env({"TELEMETRY_EXPORT_MODE": "disabled"}).exports("search")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TELEMETRY_EXPORT_MODE": "some"}, "TELEMETRY_EXPORT_MODE='some' must be one of: all, listed, disabled"),
        ({"TELEMETRY_EXPORT_MODE": "listed"}, "TELEMETRY_EXPORT_FEATURES must list at least one feature"),
        ({"TELEMETRY_EXPORT_FEATURES": "search"}, "TELEMETRY_EXPORT_FEATURES is set but TELEMETRY_EXPORT_MODE=all"),
    ],
)
def test_bad_export_settings_name_the_variable(env, message):
    with pytest.raises(SettingError, match=message):
        scope_from_env(env)
