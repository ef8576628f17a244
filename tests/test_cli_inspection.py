"""`preview`, `exported`, `quarantine` and `tail`: seeing what leaves, what left and what was set aside."""

from __future__ import annotations

import json
import uuid

from google.cloud import pubsub_v1

from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import policy_from, policy_from_env
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events


def _record(conn, count: int, seed: int, policy=None) -> list[str]:
    events = list(sample_events(count, seed=seed))
    record_events(conn, events, policy or policy_from(), ExportScope())
    return [e.id for e in events]


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _execute(conn, sql: str, params=()) -> None:
    conn.cursor().execute(sql, params)
    conn.commit()


def test_preview_shows_the_next_batch_redacted_with_todays_policy_and_changes_nothing(cli, conn):
    # Queued while search/submit's repository was allowlisted; the allowlist has since been emptied.
    ids = _record(conn, 5, seed=51, policy=policy_from_env({"TELEMETRY_ALLOWLIST": "search::submit::repository"}))
    _execute(conn, "UPDATE telemetry_events_export_queue SET payload_pb = '\\x00ff'::bytea WHERE id = %s", (ids[4],))
    cursor = conn.cursor()
    cursor.execute("SELECT payload_pb FROM telemetry_events_export_queue WHERE id = %s", (ids[0],))
    assert set(pb.Event.FromString(cursor.fetchone()[0]).parameters.private_metadata) == {"repository"}
    conn.commit()
    status, out, _ = cli("preview", "--limit", "10")
    assert status == 0
    lines = _lines(out)
    assert [line["id"] for line in lines] == ids  # the claim's order: oldest first
    for line in lines[:4]:
        assert "marketingTracking" not in line["event"]
        assert set(line["event"]["parameters"].get("privateMetadata", {})) <= {"testField"}
    assert lines[0]["event"]["feature"] == "search" and lines[0]["event"]["action"] == "submit"
    assert "privateMetadata" not in lines[0]["event"]["parameters"]  # today's policy applies
    assert lines[4]["would_quarantine"].startswith("payload is not a telemetry Event")
    cursor = conn.cursor()
    cursor.execute("SELECT count(*) FROM telemetry_events_export_queue WHERE attempts = 0 AND leased_until IS NULL")
    assert cursor.fetchone()[0] == 5
    conn.commit()


def test_preview_limit_and_an_empty_queue(cli, conn):
    _record(conn, 4, seed=52)
    status, out, _ = cli("preview", "--limit", "2")
    assert status == 0 and len(out.splitlines()) == 2
    _execute(conn, "UPDATE telemetry_events_export_queue SET exported_at = now()")
    assert cli("preview") == (0, "", "")


def test_exported_since_lists_what_left_within_the_window(cli, conn):
    ids = _record(conn, 3, seed=53)
    _execute(
        conn,
        "UPDATE telemetry_events_export_queue SET exported_at = now() - interval '10 minutes' WHERE id = %s",
        (ids[0],),
    )
    _execute(
        conn,
        "UPDATE telemetry_events_export_queue SET exported_at = now() - interval '3 hours' WHERE id = %s",
        (ids[1],),
    )
    status, out, _ = cli("exported", "--since", "1h")
    [line] = _lines(out)
    assert status == 0 and line["id"] == ids[0] and line["event"]["id"] == ids[0]
    assert "marketingTracking" not in line["event"]
    status, out, _ = cli("exported", "--since", "4h")
    assert [line["id"] for line in _lines(out)] == [ids[0], ids[1]]
    status, _, err = cli("exported", "--since", "yesterday")
    assert status == 2 and "--since='yesterday' is not a duration" in err


def test_quarantine_list_and_requeue(cli, conn):
    ids = _record(conn, 4, seed=54)
    _execute(
        conn,
        "UPDATE telemetry_events_export_queue SET quarantined_at = now(), quarantine_reason = 'bad', "
        "attempts = 10 WHERE id = ANY(%s::uuid[])",
        ("{" + ",".join(ids[:3]) + "}",),
    )
    status, out, _ = cli("quarantine", "list")
    listed = _lines(out)
    assert status == 0 and sorted(line["id"] for line in listed) == sorted(ids[:3])
    assert {line["reason"] for line in listed} == {"bad"} and listed[0]["event"]["feature"]

    status, out, _ = cli("quarantine", "requeue", ids[0].upper())
    assert (status, out) == (0, "requeued 1 row(s)\n")
    status, out, err = cli("quarantine", "requeue", ids[0], str(uuid.uuid4()))
    assert status == 2 and "not quarantined (or unknown)" in err
    assert cli("quarantine", "requeue", "nope")[2] == "telemetry-export: error: 'nope' is not an event ID (a UUID)\n"
    status, out, _ = cli("quarantine", "requeue", "--all")
    assert (status, out) == (0, "requeued 2 row(s)\n")
    cursor = conn.cursor()
    cursor.execute(
        "SELECT DISTINCT attempts, quarantined_at, last_error FROM telemetry_events_export_queue"
        " WHERE id = ANY(%s::uuid[])",
        ("{" + ",".join(ids[:3]) + "}",),
    )
    assert [list(r) for r in cursor.fetchall()] == [[0, None, "requeued after quarantine: bad"]]
    conn.commit()
    assert cli("quarantine", "list") == (0, "", "")


def test_tail_prints_what_reaches_a_subscription(cli, pubsub_emulator):
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    name = f"tail-{uuid.uuid4().hex[:8]}"
    topic = publisher.create_topic(name=publisher.topic_path("tail-test", name)).name
    subscriber.create_subscription(name=subscriber.subscription_path("tail-test", name), topic=topic)
    for n in range(3):
        publisher.publish(topic, json.dumps({"event": {"n": n}}).encode(), **{"event.id": str(n)}).result()
    status, out, _ = cli("tail", name, "--project", "tail-test", "--limit", "3")
    lines = _lines(out)
    assert status == 0
    assert sorted(line["attributes"]["event.id"] for line in lines) == ["0", "1", "2"]
    assert sorted(line["body"]["event"]["n"] for line in lines) == [0, 1, 2]
    status, _, err = cli("tail", "missing-subscription", "--project", "tail-test")
    assert status == 2 and "projects/tail-test/subscriptions/missing-subscription does not exist" in err


def test_every_subcommand_documents_itself(cli):
    import pytest

    for argv in (
        ["preview"],
        ["exported"],
        ["quarantine", "list"],
        ["quarantine", "requeue"],
        ["tail"],
        ["export"],
        ["record"],
        ["db", "migrate"],
        ["queue", "status"],
        ["cleanup"],
        ["metrics"],
    ):
        with pytest.raises(SystemExit) as exited:
            cli(*argv, "--help")
        assert exited.value.code == 0
