"""`preview`, `exported`, `quarantine` and `tail`: seeing what leaves, what left and what was set aside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from localdev.gateway import start_gateway
from localdev.ports import free_port
from telemetry_events import pb
from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import policy_from, policy_from_env
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events

CLI = str(Path(sys.executable).with_name("telemetry-export"))


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
    status, out, err = cli("preview", "--limit", "2")
    assert status == 0 and len(out.splitlines()) == 2
    assert err == "telemetry-export: showing the next 2 of 4 waiting; --limit N for more\n"
    assert cli("preview", "--limit", "4")[2] == ""
    _execute(conn, "UPDATE telemetry_events_export_queue SET exported_at = now()")
    assert cli("preview") == (0, "", "telemetry-export: nothing waiting for export\n")


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
    assert cli("quarantine", "list") == (0, "", "telemetry-export: no quarantined rows\n")


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


def _run_cli(*argv: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed command line in a child process, with `env` as its whole environment."""
    return subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=timeout, env=env)


# No Google credentials anywhere: no variables, an empty gcloud configuration, and the Compute Engine
# metadata server (a credential source) neither looked for nor reachable off this machine.
NO_CREDENTIALS = {"NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9"}


def test_tail_without_credentials_fails_in_one_line(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path), **NO_CREDENTIALS}

    result = _run_cli("tail", "events-tail", "--project", "acme", env=env)

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("telemetry-export: error: no Google credentials for Pub/Sub (Your default credentials")
    assert line.endswith(
        "; run `gcloud auth application-default login`, or set PUBSUB_EMULATOR_HOST to read from the emulator"
    )


def test_tail_at_a_dead_emulator_says_it_waits_then_gives_up_in_one_line(tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PUBSUB_EMULATOR_HOST": dead, **NO_CREDENTIALS}

    started = time.monotonic()
    result = _run_cli("tail", "events-tail", "--project", "acme", "--wait", "2", env=env)
    took = time.monotonic() - started

    assert result.returncode == 2
    assert result.stdout == ""
    waiting, failed = result.stderr.splitlines()
    assert waiting == f"telemetry-export: cannot reach Pub/Sub at {dead} yet; trying for up to 2 s"
    assert failed.startswith(f"telemetry-export: error: cannot reach Pub/Sub at {dead} within 2 s: ")
    assert "Connection refused" in failed
    # Bounded: it gave up after its 2 s, not after the client library's own minute of retries.
    assert took < 40, f"tail took {took:.1f} s to give up"


def test_tail_refuses_a_wait_that_is_not_positive(cli):
    assert cli("tail", "events-tail", "--project", "acme", "--wait", "0") == (
        2,
        "",
        "telemetry-export: error: --wait must be more than 0 seconds\n",
    )


HELP = {
    ("preview",): ("[--limit LIMIT]", "exactly as the exporter does"),
    ("exported",): ("[--since SINCE] [--limit LIMIT]", "(at most the cleanup retention), most recent first"),
    ("quarantine", "list"): ("[--limit LIMIT]", "rows to show (default 100)"),
    ("quarantine", "requeue"): (
        "[--all] [--withheld] [ID ...]",
        "requeue every row withheld as outside the export scope",
    ),
    ("tail",): ("[--project PROJECT]", "how long to keep trying to reach Pub/Sub before giving up (default 10)"),
    ("export",): ("[--drain] [--max-batches N]", "until the backlog is empty"),
    ("record",): ("[--sample N] [--seed SEED] [--jobs N] [file]", "a bad line records nothing"),
    ("db", "migrate"): ("", "show this help message and exit"),
    ("queue", "status"): ("[--json]", "Reads only; writes nothing anywhere."),
    ("cleanup",): ("[--json]", "TELEMETRY_CLEANUP_RETENTION (default 24h)"),
    ("metrics",): ("[--no-write]", "GOOGLE_CLOUD_PROJECT is set"),
}


@pytest.mark.parametrize("argv", HELP, ids=" ".join)
def test_every_subcommand_documents_itself(cli, capsys, argv):
    options, phrase = HELP[argv]

    with pytest.raises(SystemExit) as exited:
        cli(*argv, "--help")

    out = " ".join(capsys.readouterr().out.split())  # as one line: wrapping follows the terminal's width
    assert exited.value.code == 0
    assert out.startswith(f"usage: telemetry-export {' '.join(argv)} [-h] {options}".rstrip())
    assert phrase in out


def _published_event_text(data: bytes) -> str:
    """The `event` part of a published message body, as the gateway wrote it (not re-rendered)."""
    text = data.decode()
    assert text.startswith('{"metadata":')
    _, end = json.JSONDecoder().raw_decode(text, len('{"metadata":'))
    assert text[end : end + len(',"event":')] == ',"event":' and text.endswith("}")
    return text[end + len(',"event":') : -1]


def test_preview_prints_exactly_what_the_real_gateway_publishes_for_the_same_rows(
    cli, conn, pubsub_emulator, monkeypatch
):
    events = list(sample_events(6, seed=56))
    # Legacy int64 metadata (older writers), one key also in `metadata`: the gateway merges it, `metadata` wins.
    events[1].parameters.legacy_metadata["legacyCount"] = 5
    events[2].parameters.legacy_metadata["resultCount"] = 7
    events[2].parameters.metadata["resultCount"] = 12
    record_events(conn, events, policy_from(), ExportScope())
    name = f"preview-{uuid.uuid4().hex[:8]}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=publisher.topic_path("preview-test", name)).name
    subscription = subscriber.create_subscription(
        name=subscriber.subscription_path("preview-test", name), topic=topic
    ).name

    status, out, _ = cli("preview", "--limit", "10")

    assert status == 0
    previewed = {json.loads(line)["id"]: line for line in out.splitlines()}
    assert set(previewed) == {event.id for event in events}
    legacy = json.loads(previewed[events[1].id])["event"]["parameters"]
    assert "legacyMetadata" not in legacy and legacy["metadata"]["legacyCount"] == 5
    assert json.loads(previewed[events[2].id])["event"]["parameters"]["metadata"]["resultCount"] == 12

    gateway_env = {"TELEMETRY_PUBSUB_TOPIC": topic, "TELEMETRY_GATEWAY_ALLOW_UNLICENSED": "true"}
    with start_gateway(gateway_env) as gateway:
        monkeypatch.setenv("TELEMETRY_GATEWAY_ADDR", gateway.url)
        monkeypatch.setenv("TELEMETRY_INSTANCE_ID", "preview-test-instance")
        status, out, err = cli("export")
    assert (status, json.loads(out)["exported"]) == (0, 6), err
    published: dict[str, str] = {}
    while len(published) < len(events):
        response = subscriber.pull(subscription=subscription, max_messages=100, timeout=30)
        for received in response.received_messages:
            published[received.message.attributes["event.id"]] = _published_event_text(received.message.data)
        subscriber.acknowledge(subscription=subscription, ack_ids=[r.ack_id for r in response.received_messages])

    for event_id, line in previewed.items():
        # The preview line ends with the event's text exactly as the gateway wrote it: the same fields, values,
        # number spellings (242 is not 242.0) and key order (map keys sorted, as Go's protojson writes them).
        shown = line[line.index(', "event": ') + len(', "event": ') : -1]
        assert shown == published[event_id]


def test_exported_says_when_it_shows_only_part_of_the_window(cli, conn):
    ids = _record(conn, 5, seed=57)
    _execute(conn, "UPDATE telemetry_events_export_queue SET exported_at = now()")

    status, out, err = cli("exported", "--since", "1h", "--limit", "3")

    assert status == 0
    assert len(_lines(out)) == 3 and {line["id"] for line in _lines(out)} <= set(ids)
    assert err == "telemetry-export: showing 3 of 5 (most recent first); --limit N for more\n"
    status, out, err = cli("exported", "--since", "1h", "--limit", "5")
    assert (status, len(_lines(out)), err) == (0, 5, "")


def test_exported_and_quarantine_list_say_when_there_is_nothing_to_show(cli, conn):
    _record(conn, 2, seed=58)

    assert cli("exported", "--since", "2h") == (0, "", "telemetry-export: nothing exported in the last 2h\n")
    assert cli("quarantine", "list") == (0, "", "telemetry-export: no quarantined rows\n")
    assert cli("preview") != (0, "", "telemetry-export: nothing waiting for export\n")  # two rows wait
    _execute(conn, "UPDATE telemetry_events_export_queue SET exported_at = now()")
    assert cli("preview") == (0, "", "telemetry-export: nothing waiting for export\n")


def test_quarantine_list_says_when_it_shows_only_part(cli, conn):
    _record(conn, 4, seed=59)
    _execute(conn, "UPDATE telemetry_events_export_queue SET quarantined_at = now(), quarantine_reason = 'bad'")

    status, out, err = cli("quarantine", "list", "--limit", "1")

    assert (status, len(_lines(out))) == (0, 1)
    assert err == "telemetry-export: showing 1 of 4 (most recent first); --limit N for more\n"


def test_version_prints_the_installed_version():
    result = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60)

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert (result.returncode, result.stdout, result.stderr) == (0, f"telemetry-export {declared}\n", "")
