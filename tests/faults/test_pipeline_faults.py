"""Real processes broken mid-export; afterwards every recorded event is in Pub/Sub, and each duplicate explained.

Each scenario records its own events, starts `telemetry-export export` (or the export function
under functions-framework) against a real `python -m gateway_run` publishing into the emulator,
injects its fault while the export runs, recovers, exports until the backlog is empty, and
compares the `event.id` of every message on a subscription created before the first export
with the IDs recorded. Each writes one row of docs/faults.md.

The long variants (tens of thousands of events) are marked slow: scripts/test-long.sh.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter

import grpc
import pytest

from localdev.functions import start_function
from localdev.pubsub_front import Action, PublishCall, forward_everything
from localdev.tcp_proxy import TcpProxy
from telemetry_export.exporter import MAX_BATCHES_IN_FLIGHT, NOT_ACKNOWLEDGED

from .conftest import MakePipeline, RestartableEmulator
from .harness import FaultTable, Outcome, Pipeline, PubSubAdmin, assert_nothing_lost, wait_for

BATCH = 500
SIZES = [pytest.param(4_000, id="4k"), pytest.param(40_000, id="40k", marks=pytest.mark.slow)]


def label(scenario: str, size: int) -> str:
    return scenario if size <= 10_000 else f"{scenario} ({size:,} events)"


def finish(table: FaultTable, pipeline: Pipeline, outcome: Outcome, why: str, pubsub_note: bool = True) -> Outcome:
    """Adds the row (before asserting, so a failing count still shows in the table), then asserts it.

    The row says why there are duplicates; publishes in doubt below the gateway (answers that did
    not reach it: the emulator was slow, or went away) are added to the reason when there were any.
    """
    if pubsub_note and outcome.in_doubt_at_pubsub:
        why += (
            f"; {outcome.in_doubt_at_pubsub:,} events were in publish calls whose answer did not reach the "
            "gateway, which its Pub/Sub client may have stored twice"
        )
    outcome = dataclasses.replace(outcome, why=why)
    table.add(outcome)
    assert_nothing_lost(outcome, pipeline)
    return outcome


def in_flight_bound() -> int:
    """The most rows one run can hold unsettled: its batches in flight."""
    return MAX_BATCHES_IN_FLIGHT * BATCH


@pytest.mark.parametrize("size", SIZES)
def test_gateway_killed_mid_stream(make_pipeline: MakePipeline, fault_table: FaultTable, size: int) -> None:
    pipeline = make_pipeline()
    recorded = pipeline.db.record(size, seed=101)
    # Killed the moment its next publish reaches Pub/Sub: that batch is stored, never acknowledged.
    armed, publishing = threading.Event(), threading.Event()

    def watch(call: PublishCall) -> Action:
        if armed.is_set():
            publishing.set()
        return Action.FORWARD

    pipeline.front.script = watch

    # A budget no loaded machine can use up before the fault: the run must still be claiming when the
    # gateway dies (with the harness' 3 s it could stop on "time budget" first and prove nothing). The
    # run releases its rows when the gateway dies, so the longer lease this implies costs no wait.
    exporter = pipeline.start_exporter(TELEMETRY_EXPORT_FUNCTION_TIMEOUT="60")
    pipeline.wait_mid_run(exporter, exported_at_least=BATCH)
    armed.set()
    assert publishing.wait(30), "the gateway published nothing more after the first batch"
    pipeline.kill_gateway()
    assert exporter.wait(30) == 1, exporter.output()  # the run notices, settles what it heard, and says so
    summary = exporter.summary()
    assert summary is not None and summary["stopped_because"].startswith("gateway unavailable"), summary
    in_doubt = pipeline.note_in_doubt()
    assert 0 < len(in_doubt) <= in_flight_bound()
    assert pipeline.db.states()["leased"] == 0  # released at once: the next run need not wait for a lease

    pipeline.restart_gateway()
    pipeline.export_until_empty()
    outcome = pipeline.tally(label("gateway killed (SIGKILL) mid-stream", size), recorded, "")
    finish(
        fault_table,
        pipeline,
        outcome,
        f"{len(in_doubt):,} rows were in flight when the gateway died: the run released them unacknowledged "
        f"and the next run sent them again; {outcome.duplicates:,} of them had already reached Pub/Sub",
    )


def test_gateway_answers_a_partial_acknowledgement(make_pipeline: MakePipeline, fault_table: FaultTable) -> None:
    # Pub/Sub refuses every other publish call (a non-retryable error): the real gateway leaves
    # those events out of its answer and acknowledges the rest.
    pipeline = make_pipeline()
    front = pipeline.front
    front.error_code = grpc.StatusCode.FAILED_PRECONDITION
    front.script = lambda call: Action.REFUSE if call.number % 2 == 0 else Action.FORWARD
    recorded = pipeline.db.record(3_000, seed=102)

    first = pipeline.export_once()
    summary = first.summary()
    refused = {i for call in front.calls_with(Action.REFUSE) for i in call.event_ids}
    assert summary is not None and summary["exported"] > 0 and summary["failed"] > 0, summary
    # Exactly the refused events are left, each with its reason; the rest are marked exported.
    assert summary["failed"] == len(refused) == summary["remaining"]
    assert pipeline.note_in_doubt() == refused
    [(errors,)] = pipeline.db.query(
        "SELECT array_agg(DISTINCT last_error) FROM telemetry_events_export_queue WHERE exported_at IS NULL"
    )
    assert errors == [NOT_ACKNOWLEDGED]

    front.script = forward_everything
    pipeline.export_until_empty()
    outcome = pipeline.tally("gateway answers a partial acknowledgement (Pub/Sub refuses some)", recorded, "")
    if outcome.in_doubt_at_pubsub == 0:
        assert outcome.duplicates == 0  # a refused publish never reached Pub/Sub: resending duplicates nothing
    finish(
        fault_table,
        pipeline,
        outcome,
        f"none: the {len(refused):,} events left out of the answer had never reached Pub/Sub, "
        "and the next run sent exactly those",
    )


def test_pubsub_answers_lost_after_publishing(make_pipeline: MakePipeline, fault_table: FaultTable) -> None:
    # Pub/Sub stores a batch but its answer is lost (UNAVAILABLE): the gateway's client retries
    # the same batch, Pub/Sub stores it again. The exporter never hears of it.
    def lose_some_answers(call: PublishCall) -> Action:
        return Action.LOSE_ANSWER if call.number % 3 == 1 and call.number <= 30 else Action.FORWARD

    pipeline = make_pipeline()
    pipeline.front.script = lose_some_answers
    recorded = pipeline.db.record(3_000, seed=103)
    pipeline.export_until_empty()
    outcome = pipeline.tally("Pub/Sub answer lost after it stored the messages", recorded, "")

    lost_answers = Counter(i for call in pipeline.front.calls_with(Action.LOSE_ANSWER) for i in call.event_ids)
    any_doubt = Counter(i for call in pipeline.front.in_doubt() for i in call.event_ids)
    assert lost_answers, "no publish answer was lost: the scenario injected nothing"
    extra = {i: n - 1 for i, n in pipeline.collector.counts().items() if n > 1}
    # Each lost answer is one more copy in Pub/Sub (and only publishes in doubt can add any).
    assert all(lost_answers[i] <= extra.get(i, 0) <= any_doubt[i] for i in set(extra) | set(lost_answers))
    assert outcome.exporter_runs == 1  # the gateway's retry absorbed it: nothing was resent by the exporter
    finish(
        fault_table,
        pipeline,
        outcome,
        f"the messages of the {len(pipeline.front.calls_with(Action.LOSE_ANSWER))} publish calls whose answer "
        f"was dropped after Pub/Sub stored them ({sum(lost_answers.values()):,} events): the gateway's Pub/Sub "
        "client retried them and Pub/Sub stored them twice; the exporter saw one acknowledgement each",
        pubsub_note=False,
    )


def test_pubsub_emulator_stopped_and_restarted_mid_run(
    make_pipeline: MakePipeline, own_emulator: RestartableEmulator, fault_table: FaultTable
) -> None:
    # The gateway reaches the emulator through a proxy: cutting it first means the emulator holds
    # no message the test has not pulled when it stops (it keeps messages in memory only; real
    # Pub/Sub is durable). To the gateway, the cut is the emulator's process going away.
    with TcpProxy("127.0.0.1", own_emulator.port).start() as proxy:
        pipeline = make_pipeline(emulator=own_emulator.host_port, pubsub_upstream=proxy.host_port)
        recorded = pipeline.db.record(4_000, seed=104)
        topic_id = pipeline.gateway_env["TELEMETRY_PUBSUB_TOPIC"].rsplit("/", 1)[1]

        # A time budget far longer than the gateway's publish timeout (3 s): the run must stop because
        # the gateway published nothing, not because its time ran out first (a race at 4 s).
        exporter = pipeline.start_exporter(TELEMETRY_EXPORT_FUNCTION_TIMEOUT="60")
        pipeline.wait_mid_run(exporter, exported_at_least=BATCH)
        proxy.cut()
        time.sleep(0.3)
        pipeline.collector.drain(quiet=1.0)  # what the emulator accepted before it went away
        own_emulator.stop()
        assert pipeline.gateway.wait_for_health("NOT_SERVING", timeout=15) == "NOT_SERVING"
        # The run stops on the first batch the gateway acknowledged none of, says so, and churns no further.
        assert exporter.wait(60) == 1, exporter.output()
        summary = exporter.summary()
        states = pipeline.db.states()
        assert summary is not None and summary["stopped_because"].startswith("gateway unavailable: "), summary
        assert summary["exported"] == states["exported"] >= BATCH, (summary, states)
        assert summary["remaining"] == len(recorded) - summary["exported"] == states["waiting"], (summary, states)
        assert states["leased"] == 0, states  # released at once: the next run need not wait for a lease
        in_doubt = pipeline.note_in_doubt()
        # Every row it left in doubt is one it counted as failed: the batches in flight when it stopped,
        # given their attempt back (no fair attempt), and any refused among acknowledged ones before.
        assert len(in_doubt) == summary["failed"] > 0, (len(in_doubt), summary)
        attempts = dict(
            pipeline.db.query(
                "SELECT attempts, count(*) FROM telemetry_events_export_queue"
                " WHERE exported_at IS NULL AND last_error IS NOT NULL GROUP BY attempts"
            )
        )
        assert set(attempts) <= {0, 1} and 0 < attempts.get(0, 0) <= in_flight_bound(), attempts

        own_emulator.start()
        admin = PubSubAdmin(own_emulator.host_port)
        admin.create(topic_id)  # the restarted emulator remembers nothing: same names again
        pipeline.collector.switch_to(admin)
        proxy.restore()
        assert pipeline.gateway.wait_for_health("SERVING", timeout=20) == "SERVING"
        pipeline.export_until_empty()
        outcome = pipeline.tally("Pub/Sub emulator stopped and restarted mid-run", recorded, "")

    finish(
        fault_table,
        pipeline,
        outcome,
        f"{len(in_doubt):,} rows were unacknowledged when Pub/Sub went away and were sent again after it came "
        f"back; {outcome.duplicates:,} of them had been stored just before the connection broke",
    )


def test_postgres_restarted_mid_run(make_pipeline: MakePipeline, private_cluster, fault_table: FaultTable) -> None:
    pipeline = make_pipeline(database_url=private_cluster.url_for("faults"))
    recorded = pipeline.db.record(4_000, seed=105)

    exporter = pipeline.start_exporter()
    pipeline.wait_mid_run(exporter, exported_at_least=BATCH)
    private_cluster.restart("immediate")  # a crash: no checkpoint, connections cut, recovery from WAL
    assert exporter.wait(30) == 2, exporter.output()  # "database unavailable"
    assert "database unavailable" in exporter.output()
    in_doubt = pipeline.note_in_doubt()
    assert 0 < len(in_doubt) <= in_flight_bound()

    pipeline.export_until_empty()
    outcome = pipeline.tally("Postgres restarted (immediate) mid-run", recorded, "")
    finish(
        fault_table,
        pipeline,
        outcome,
        f"{len(in_doubt):,} rows were leased by the run the crash ended; once the lease expired the next run "
        f"sent them again, {outcome.duplicates:,} of them already published",
    )


@pytest.mark.parametrize("size", SIZES)
def test_exporter_killed_mid_batch(make_pipeline: MakePipeline, fault_table: FaultTable, size: int) -> None:
    pipeline = make_pipeline()
    recorded = pipeline.db.record(size, seed=106)

    exporter = pipeline.start_exporter()
    pipeline.wait_mid_run(exporter, exported_at_least=BATCH)
    exporter.kill()
    in_doubt = pipeline.note_in_doubt()
    assert 0 < len(in_doubt) <= in_flight_bound()
    assert pipeline.db.lease_left() > 0  # nobody released them: they wait for their lease to expire

    pipeline.export_until_empty()
    outcome = pipeline.tally(label("exporter killed (SIGKILL) mid-batch", size), recorded, "")
    finish(
        fault_table,
        pipeline,
        outcome,
        f"{len(in_doubt):,} rows were leased by the killed run; once the lease expired the next run sent them "
        f"again, {outcome.duplicates:,} of them already published",
    )


@pytest.mark.parametrize(
    ("exporters", "size"),
    [
        pytest.param(2, 6_000, id="two"),
        pytest.param(4, 6_000, id="four"),
        pytest.param(4, 60_000, id="four-60k", marks=pytest.mark.slow),
    ],
)
def test_exporters_at_once(make_pipeline: MakePipeline, fault_table: FaultTable, exporters: int, size: int) -> None:
    pipeline = make_pipeline(exporter_extra={"TELEMETRY_EXPORT_BATCH_SIZE": "250"})
    recorded = pipeline.db.record(size, seed=107 + exporters)

    runs = [pipeline.start_exporter() for _ in range(exporters)]
    for run in runs:
        assert run.wait(120) == 0, run.output()
    pipeline.export_until_empty()
    outcome = pipeline.tally(label(f"{exporters} exporters at once", size), recorded, "")

    summaries = [run.summary() or {} for run in pipeline.exporters]
    assert sum(s.get("exported", 0) for s in summaries) == size
    assert sum(1 for s in summaries[:exporters] if s.get("exported", 0) > 0) >= 2  # they really overlapped
    assert outcome.duplicates == 0  # SKIP LOCKED: no row was ever in two runs at once
    finish(fault_table, pipeline, outcome, "none: no row was ever claimed by two runs at once, and no run failed")


def test_function_deadline_hit(make_pipeline: MakePipeline, fault_table: FaultTable) -> None:
    # A 6 s function (2 s of budget, 4 s of margin: answers are awaited until 4 s, and 2 s are left to
    # settle) against a backlog it cannot finish in one call: each call must stop on its budget,
    # settle what it sent before it answers, and leave the rest for the next call.
    timeout = 6.0
    pipeline = make_pipeline()
    recorded = pipeline.db.record(24_000, seed=111)  # more than one call can export: at most ~8,000/s here
    env = {
        **pipeline.exporter_env,
        "TELEMETRY_GATEWAY_ADDR": pipeline.gateway.url,
        "TELEMETRY_EXPORT_FUNCTION_TIMEOUT": str(timeout),
        "TELEMETRY_EXPORT_DEADLINE_MARGIN": "4",
        "TELEMETRY_EXPORT_MAX_MESSAGE_BYTES": "16384",
    }
    summaries = []
    with start_function("export_events", env) as function:
        for _ in range(20):
            started = time.monotonic()
            status, summary = function.call(timeout=60)
            wall = time.monotonic() - started
            pipeline.runs += 1
            assert status == 200, (summary, function.log_tail())
            # The mechanism: the call stopped on its budget (or an empty backlog) and settled every row
            # it claimed before answering: none is left leased for the next call to wait on.
            assert summary["stopped_because"] in ("time budget", "backlog empty"), summary
            assert pipeline.db.states()["leased"] == 0, (summary, function.log_tail())
            # The function's own clock against its deadline (2 s of slack to settle), and the caller's with
            # a generous margin for HTTP and process overhead on a shared machine: only a call that ignored
            # its deadline fails these.
            assert summary["duration_s"] < timeout and wall < timeout + 10, (summary, wall, function.log_tail())
            summaries.append(summary)
            pipeline.note_in_doubt()
            if summary["remaining"] == 0:
                break
    assert summaries[0]["stopped_because"] == "time budget" and summaries[0]["remaining"] > 0, summaries[0]
    assert all(s["stopped_because"] == "time budget" for s in summaries[:-1]), summaries
    assert summaries[-1]["remaining"] == 0
    assert sum(s["exported"] for s in summaries) == len(recorded)
    assert pipeline.db.states()["waiting"] == 0
    outcome = pipeline.tally(f"function deadline hit ({timeout:g} s timeout, large backlog)", recorded, "")
    unanswered = outcome.in_doubt
    finish(
        fault_table,
        pipeline,
        outcome,
        f"{len(summaries)} calls, each returning within the timeout; "
        + (
            "none: every call heard back about each batch it sent"
            if unanswered == 0
            else f"{unanswered:,} rows were still unanswered when a call's time ran out and were sent again by the "
            f"next call, {outcome.duplicates:,} of them already published"
        ),
    )


def test_database_connection_dropped_between_claim_and_mark(
    make_pipeline: MakePipeline, fault_table: FaultTable
) -> None:
    pipeline = make_pipeline()
    recorded = pipeline.db.record(4_000, seed=112)

    exporter = pipeline.start_exporter()
    pipeline.wait_mid_run(exporter, exported_at_least=BATCH)
    terminated: list[int] = []

    def drop_while_waiting_for_the_gateway() -> bool:
        # Idle between transactions with rows leased: claimed, sent, not yet marked.
        if not exporter.alive:
            raise AssertionError(f"the exporter finished before the fault:\n{exporter.output()}")
        for pid, state in pipeline.db.exporter_backends():
            if state == "idle" and pipeline.db.states()["leased"] > 0 and pipeline.db.terminate(pid):
                terminated.append(pid)
                return True
        return False

    wait_for(drop_while_waiting_for_the_gateway, 30, "the exporter's connection idle with rows claimed")
    assert exporter.wait(30) == 2, exporter.output()
    assert "database unavailable" in exporter.output()
    in_doubt = pipeline.note_in_doubt()
    assert 0 < len(in_doubt) <= in_flight_bound()

    pipeline.export_until_empty()
    outcome = pipeline.tally("database connection dropped between claim and mark", recorded, "")
    finish(
        fault_table,
        pipeline,
        outcome,
        f"{len(in_doubt):,} rows were claimed when the connection was dropped; once the lease expired the next "
        f"run sent them again, {outcome.duplicates:,} of them already acknowledged by the gateway",
    )
