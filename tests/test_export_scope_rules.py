"""What a queue row becomes at send time, and whether today's export scope lets it leave, in-process.

The exporter's tests reach these through a live gateway (tests/exporter/test_scope.py, test_schema_only.py); these
pin the exact answers of `outgoing` and `withheld_reason`, including the reasons stored with a quarantined or
withheld row (found by mutation testing, docs/testing.md).
"""

from __future__ import annotations

import pytest

from telemetry_events import pb
from telemetry_events.envvars import SettingError
from telemetry_events.export_mode import ExportMode, ExportScope, scope_from_env
from telemetry_events.redaction import parse_allowlist, policy_from
from telemetry_export.outgoing import Outgoing, Unsendable, outgoing, outgoing_bytes, withheld_reason

ROW = "0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0e"
POLICY = policy_from(parse_allowlist("search::submit::lang"))


def _event(**fields) -> pb.Event:
    event = pb.Event(**{"id": ROW, "feature": "search", "action": "submit", **fields})
    event.timestamp.FromSeconds(1_700_000_000)
    return event


def test_a_row_already_in_its_sent_form_is_sent_as_stored():
    event = _event()
    event.parameters.private_metadata.update({"lang": "go"})
    stored = event.SerializeToString(deterministic=True)
    assert outgoing(ROW, stored, POLICY) == Outgoing(stored, "search", False)
    assert outgoing_bytes(ROW, stored, POLICY) == stored


def test_a_row_with_more_than_todays_policy_allows_is_sent_redacted():
    event = _event()
    event.parameters.private_metadata.update({"lang": "go", "query": "secret"})
    stored = event.SerializeToString(deterministic=True)
    sent = outgoing(ROW, stored, POLICY)
    assert sent.feature == "search" and sent.changed is True and b"secret" not in sent.data
    assert dict(pb.Event.FromString(sent.data).parameters.private_metadata) == {"lang": "go"}
    assert outgoing_bytes(ROW, stored, POLICY) == sent.data


def test_a_row_whose_id_is_spelled_otherwise_is_sent_under_the_rows_id():
    stored = _event(id=ROW.upper()).SerializeToString(deterministic=True)
    sent = outgoing(ROW, stored, POLICY)
    assert pb.Event.FromString(sent.data).id == ROW and sent.changed


def test_bytes_that_are_not_an_event_are_unsendable_with_the_parsers_reason():
    with pytest.raises(Unsendable, match=r"^payload is not a telemetry Event: .+"):
        outgoing(ROW, b"\xff\xff\xff", POLICY)


@pytest.mark.parametrize(
    "event_id, shown",
    [
        ("0194f3a2-7c1e-7b2a-9d3e-000000000000", "'0194f3a2-7c1e-7b2a-9d3e-000000000000'"),
        ("not-a-uuid", "'not-a-uuid'"),  # not a UUID at all: never sent under the row's ID
        ("x" * 100, repr("x" * 80)),  # at most 80 characters of it in the reason
    ],
    ids=["another UUID", "not a UUID", "long"],
)
def test_a_payload_naming_another_id_is_unsendable(event_id, shown):
    stored = _event(id=event_id).SerializeToString()
    with pytest.raises(Unsendable) as raised:
        outgoing(ROW, stored, POLICY)
    assert str(raised.value) == f"payload's event ID {shown} differs from the row's"


def test_an_invalid_event_is_unsendable_with_every_problem_named():
    stored = pb.Event(id=ROW, feature="", action="Bad").SerializeToString()
    with pytest.raises(Unsendable) as raised:
        outgoing(ROW, stored, POLICY)
    assert str(raised.value) == (
        "invalid event: timestamp is required; feature is required; action 'Bad' must be a lowercase letter "
        "followed by one or more letters, '-' or '.' (pattern ^[a-z][a-zA-Z-\\.]+$)"
    )


def test_what_each_scope_holds_back_and_why():
    listed = ExportScope(ExportMode.LISTED_FEATURES, frozenset({"search"}))
    assert withheld_reason(ExportScope(), "anything") is None
    assert withheld_reason(listed, "search") is None
    assert withheld_reason(listed, "blob") == (
        "outside the export scope: feature 'blob' is not in TELEMETRY_EXPORT_FEATURES"
    )
    long_feature = "a" * 100
    assert withheld_reason(listed, long_feature) == (
        f"outside the export scope: feature {'a' * 64!r} is not in TELEMETRY_EXPORT_FEATURES"
    )
    disabled = ExportScope(ExportMode.DISABLED)
    assert withheld_reason(disabled, "search") == "export disabled: TELEMETRY_EXPORT_MODE=disabled"


def test_the_scope_read_from_the_environment():
    assert scope_from_env({}) == ExportScope()
    listed = scope_from_env({"TELEMETRY_EXPORT_MODE": "listed", "TELEMETRY_EXPORT_FEATURES": " search, ,blob "})
    assert listed == ExportScope(ExportMode.LISTED_FEATURES, frozenset({"search", "blob"}))
    assert listed.exports("blob") and not listed.exports("cody.chat")
    disabled = scope_from_env({"TELEMETRY_EXPORT_MODE": "disabled"})
    assert not disabled.exports("search")
    with pytest.raises(SettingError, match="TELEMETRY_EXPORT_FEATURES must list at least one feature"):
        scope_from_env({"TELEMETRY_EXPORT_MODE": "listed"})
    with pytest.raises(SettingError, match="TELEMETRY_EXPORT_MODE=all ignores it: use listed"):
        scope_from_env({"TELEMETRY_EXPORT_FEATURES": "search"})
    with pytest.raises(SettingError, match="TELEMETRY_EXPORT_MODE"):
        scope_from_env({"TELEMETRY_EXPORT_MODE": "some"})
