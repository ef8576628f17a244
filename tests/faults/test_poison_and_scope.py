"""Fault scenarios of hostile or careless input with the real pipeline: nothing stalls, nothing out of scope leaves.

- A poison row, stored as an older version would have stored it (unknown content nested 99
  levels deep: an Event decodes it, a RecordEventsRequest two levels deeper does not), heads
  the queue among 200 healthy rows. Before the exporter kept only what the schema knows, the
  gateway refused every stream for it and nothing behind it ever left.
- The export scope is narrowed (all -> listed) with a backlog recorded under `all`.
"""

from __future__ import annotations

import json

from telemetry_events import pb
from tests.wire_bytes import varint

from .harness import FaultTable, Outcome, Pipeline, assert_nothing_lost
from .test_pipeline_faults import MakePipeline, finish


def _nested_unknown_groups(depth: int) -> bytes:
    body = varint(1 << 3 | 2) + b"\x06poison"
    for _ in range(depth):
        body = varint(98 << 3 | 3) + body + varint(98 << 3 | 4)
    return body


def _insert_poison(pipeline: Pipeline, template_id: str) -> str:
    """A copy of a healthy row under a new ID, oldest in the queue, with 99 levels of unknown groups."""
    [(payload,)] = pipeline.db.query(
        "SELECT payload_pb FROM telemetry_events_export_queue WHERE id = %s", (template_id,)
    )
    event = pb.Event.FromString(bytes(payload))
    event.id = event.id[:-12] + "00000000beef"
    stored = event.SerializeToString() + _nested_unknown_groups(99)
    assert pb.Event.FromString(stored).id == event.id  # the exporter (and preview) can read it
    request = b"\x12" + varint(len(stored) + 1 + len(varint(len(stored)))) + b"\x0a" + varint(len(stored)) + stored
    try:
        pb.RecordEventsRequest.FromString(request)
        raise AssertionError("the poison decodes as a request: it would prove nothing")
    except Exception as error:  # noqa: BLE001 - DecodeError: the gateway's whole-message decoding fails
        assert "Error parsing message" in str(error) or "DecodeError" in type(error).__name__
    pipeline.db.query(
        "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb)"
        " VALUES (%s, now() - interval '1 day', %s) RETURNING id",
        (event.id, stored),
    )
    return event.id


def test_a_poison_row_ahead_of_healthy_ones_stalls_nothing(make_pipeline: MakePipeline, fault_table: FaultTable):
    pipeline = make_pipeline()
    recorded = pipeline.db.record(200, seed=701)
    poison = _insert_poison(pipeline, recorded[0])
    summaries = []
    for _ in range(2):  # at most two runs
        exporter = pipeline.export_once()
        summaries.append(exporter.summary())
        if pipeline.db.states()["waiting"] == 0:
            break
    assert all(s is not None and not s["stopped_because"].startswith("gateway unavailable") for s in summaries)
    states = pipeline.db.states()
    assert states["waiting"] == 0 and states["leased"] == 0, states
    # The exporter sends only what the schema knows: the nesting is dropped and the event goes out.
    # (Were it refused anyway, it would be quarantined alone with the gateway's reason, not stall the rest.)
    assert states == {"exported": 201, "quarantined": 0, "waiting": 0, "leased": 0}, states
    outcome = pipeline.tally(
        "poison event (99 levels of unknown groups) ahead of 200 healthy ones", [*recorded, poison], ""
    )
    finish(
        fault_table,
        pipeline,
        outcome,
        f"none; {len(summaries)} run(s), the poison row was sent without the fields the schema does not know",
    )
    assert_nothing_lost(outcome, pipeline)


def test_narrowing_the_scope_holds_back_the_backlog(make_pipeline: MakePipeline, fault_table: FaultTable):
    pipeline = make_pipeline()
    recorded = pipeline.db.record(800, seed=702)  # under TELEMETRY_EXPORT_MODE=all
    rows = pipeline.db.query("SELECT id::text, payload_pb FROM telemetry_events_export_queue")
    feature = {row_id: pb.Event.FromString(bytes(payload)).feature for row_id, payload in rows}
    in_scope = [i for i in recorded if feature[i] in ("search", "blob")]
    exporter = pipeline.export_once(TELEMETRY_EXPORT_MODE="listed", TELEMETRY_EXPORT_FEATURES="search,blob")
    summary = exporter.summary()
    assert summary is not None, exporter.output()
    assert (summary["exported"], summary["withheld"], summary["remaining"]) == (len(in_scope), 800 - len(in_scope), 0)
    [(withheld,)] = pipeline.db.query("SELECT count(*) FROM telemetry_events_export_queue WHERE withheld")
    assert withheld == 800 - len(in_scope)
    pipeline.collector.collect(set(in_scope))
    published = pipeline.collector.event_ids()
    assert published == set(in_scope)  # nothing outside today's scope left
    counts = pipeline.collector.counts()
    outcome = Outcome(
        scenario="export scope narrowed (all -> listed) with a backlog",
        recorded=len(in_scope),
        published_unique=len(published),
        lost=len(set(in_scope) - published),
        duplicates=sum(n - 1 for n in counts.values()),
        in_doubt=0,
        in_doubt_at_pubsub=0,
        exporter_runs=pipeline.runs,
        why=f"none; {800 - len(in_scope)} rows outside the scope were withheld, none of them published",
        lost_ids=frozenset(set(in_scope) - published),
    )
    fault_table.add(outcome)
    assert outcome.lost == 0 and outcome.duplicates == 0
    disabled = pipeline.export_once(TELEMETRY_EXPORT_MODE="disabled")
    assert json.loads(json.dumps(disabled.summary()))["stopped_because"].startswith("export disabled")
