"""The fault suite's harness: a real pipeline to break, and the count of every event that went through it.

A `Pipeline` is one database, one `python -m gateway_run` publishing into a Pub/Sub emulator,
and `telemetry-export export` runs as child processes. A test records a known set of events,
breaks something while an export runs, recovers, exports until the backlog is empty, and
then compares what reached a subscription created before the first export with what was
recorded. The comparison (`Outcome`) is strict: the set of `event.id` attributes published
must equal the set recorded; duplicates are counted (messages beyond one per ID, Pub/Sub's
own redeliveries excluded by message ID) and must come from events that were in doubt at a
fault. There are two places where an event can be in doubt:

- at the exporter: a row leased by a run that died, or released by a run that broke off
  (the gateway may have published it; the next run sends it again);
- below the gateway: a Publish call whose answer did not reach the gateway (the gateway's
  Pub/Sub client retries it, and Pub/Sub may store it twice). The gateway reaches the
  emulator through a `PubSubFront`, which sees every such call.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg8000.dbapi

from localdev import pubsub_admin as localdev_pubsub
from localdev.gateway import GatewayProcess, start_gateway
from localdev.pubsub_front import PubSubFront
from telemetry_events.export_mode import ExportScope
from telemetry_events.redaction import policy_from
from telemetry_export.migrate import migrate
from telemetry_export.recording import record_events
from telemetry_export.sample_events import sample_events
from telemetry_export.store.connection import parse_database_url

PROJECT = "fault-tests"
INSTANCE_ID = "fault-instance"
EXPORTER_CLI = str(Path(sys.executable).with_name("telemetry-export"))
# What every exporter run of the suite uses unless a scenario says otherwise. Short function
# timeouts keep the leases of a run that dies short (a lease lasts about as long as the run
# may), so recovering from a crash costs seconds, not the default five minutes.
EXPORTER_DEFAULTS = {
    "TELEMETRY_EXPORT_BATCH_SIZE": "500",
    "TELEMETRY_EXPORT_MAX_MESSAGE_BYTES": "65536",
    "TELEMETRY_EXPORT_FUNCTION_TIMEOUT": "4",
    "TELEMETRY_EXPORT_DEADLINE_MARGIN": "1",
    "TELEMETRY_EXPORT_LEASE": "1",
    "TELEMETRY_EXPORT_RPC_TIMEOUT": "10",
    "LOG_LEVEL": "info",
}


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Polls `condition` until it holds; fails the test naming `what` when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- Pub/Sub -------------------------------------------------------------------------------------------------------


class PubSubAdmin(localdev_pubsub.PubSubAdmin):
    """Topics, subscriptions and pulls on one emulator, whatever PUBSUB_EMULATOR_HOST says elsewhere."""

    def create(self, topic_id: str) -> tuple[str, str]:  # type: ignore[override]
        """Creates the topic and a subscription taking everything it will carry; returns both paths."""
        return super().create(PROJECT, topic_id, f"{topic_id}-all", ack_deadline_seconds=60)


@dataclass(frozen=True)
class Received:
    """One Pub/Sub message: `generation` tells emulator lifetimes apart (message IDs restart with it)."""

    generation: int
    message_id: str
    event_id: str
    data: bytes
    attributes: dict[str, str]


class Collector:
    """Everything that reaches one subscription, kept across emulator restarts."""

    def __init__(self, admin: PubSubAdmin, subscription: str) -> None:
        self.admin = admin
        self.subscription = subscription
        self.generation = 0
        self.messages: dict[tuple[int, str], Received] = {}
        self.redeliveries = 0

    def switch_to(self, admin: PubSubAdmin) -> None:
        """After the emulator restarted: the same subscription name on a new emulator lifetime."""
        self.admin = admin
        self.generation += 1

    def pull_once(self, timeout: float = 1.0) -> int:
        """One pull, acknowledged; returns how many messages it brought. An empty pull waits `timeout`."""
        received = self.admin.pull_once(self.subscription, timeout=timeout)
        if not received:
            return 0
        for message in received:
            key = (self.generation, message.message_id)
            if key in self.messages:
                self.redeliveries += 1  # Pub/Sub's own redelivery: not a duplicate the pipeline made
                continue
            attributes = dict(message.attributes)
            self.messages[key] = Received(
                self.generation, message.message_id, attributes.get("event.id", ""), bytes(message.data), attributes
            )
        return len(received)

    def drain(self, quiet: float = 1.0, timeout: float = 60.0) -> None:
        """Pulls until a pull waits `quiet` seconds for nothing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pull_once(timeout=quiet):
                return
        raise AssertionError(f"{self.subscription} kept delivering for {timeout:.0f} s")

    def collect(self, expected: set[str], quiet: float = 1.0, timeout: float = 120.0) -> None:
        """Pulls until every expected ID arrived (or `timeout`), then until quiet: late duplicates count too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not expected <= self.event_ids():
            self.pull_once(timeout=quiet)
        self.drain(quiet=quiet, timeout=max(deadline - time.monotonic(), 10.0))

    def event_ids(self) -> set[str]:
        return {m.event_id for m in self.messages.values()}

    def counts(self) -> Counter[str]:
        return Counter(m.event_id for m in self.messages.values())


# --- The queue -----------------------------------------------------------------------------------------------------


class QueueDb:
    """The export queue of one database, seen from the test's side (its own connection, never the exporter's)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: pg8000.dbapi.Connection | None = None

    def connect(self) -> pg8000.dbapi.Connection:
        return pg8000.dbapi.connect(**parse_database_url(self.url), timeout=30)

    def migrate(self) -> None:
        conn = self.connect()
        try:
            migrate(conn)
        finally:
            conn.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Runs one statement on the observer connection, reconnecting once if the server restarted."""
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self.connect()
                cursor = self._conn.cursor()
                cursor.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else []
                self._conn.commit()
                return [tuple(row) for row in rows]
            except (pg8000.dbapi.InterfaceError, pg8000.dbapi.DatabaseError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pg8000.dbapi.InterfaceError, OSError):
                self._conn.close()
            self._conn = None

    def record(self, count: int, seed: int, chunk: int = 20_000) -> list[str]:
        """Records `count` sample events (sensitive fields included); returns their IDs."""
        ids: list[str] = []
        conn = self.connect()
        try:
            events = sample_events(count, seed=seed)
            while True:
                batch = [event for _, event in zip(range(chunk), events, strict=False)]
                if not batch:
                    break
                record_events(conn, batch, policy_from(), ExportScope())
                ids.extend(event.id for event in batch)
        finally:
            conn.close()
        assert len(set(ids)) == count
        return ids

    def states(self) -> dict[str, int]:
        [(exported, quarantined, waiting, leased)] = self.query(
            "SELECT count(*) FILTER (WHERE exported_at IS NOT NULL),"
            " count(*) FILTER (WHERE quarantined_at IS NOT NULL),"
            " count(*) FILTER (WHERE exported_at IS NULL AND quarantined_at IS NULL),"
            " count(*) FILTER (WHERE exported_at IS NULL AND leased_until > now())"
            " FROM telemetry_events_export_queue"
        )
        return {"exported": exported, "quarantined": quarantined, "waiting": waiting, "leased": leased}

    def in_doubt(self) -> set[str]:
        """Unexported rows a run took and did not settle cleanly: still leased, or released with an error."""
        rows = self.query(
            "SELECT id::text FROM telemetry_events_export_queue"
            " WHERE exported_at IS NULL AND (leased_until IS NOT NULL OR last_error IS NOT NULL)"
        )
        return {row[0] for row in rows}

    def lease_left(self) -> float:
        """Seconds until the last live lease on an unexported row ends; 0 when none is live."""
        [(left,)] = self.query(
            "SELECT coalesce(extract(epoch FROM max(leased_until) - now()), 0)::float8"
            " FROM telemetry_events_export_queue WHERE exported_at IS NULL AND leased_until > now()"
        )
        return max(float(left), 0.0)

    def exporter_backends(self) -> list[tuple[int, str]]:
        """(pid, state) of the other client connections to this database: the exporter's."""
        rows = self.query(
            "SELECT pid, coalesce(state, '') FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return [(int(pid), str(state)) for pid, state in rows]

    def terminate(self, pid: int) -> bool:
        [(done,)] = self.query("SELECT pg_terminate_backend(%s)", (pid,))
        return bool(done)


# --- Exporter processes --------------------------------------------------------------------------------------------


class ExporterProcess:
    """`telemetry-export export` as a child process in its own process group, output kept in files."""

    def __init__(self, env: Mapping[str, str], workdir: Path, name: str, argv: tuple[str, ...] = ("export",)):
        self.name = name
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [EXPORTER_CLI, *argv],
                env=dict(env),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not finish within {timeout:.0f} s:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL to the whole group: the process has no chance to settle anything."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path) if p.exists())

    def summary(self) -> dict[str, Any] | None:
        """The run's JSON summary (its last stdout line), or None when it printed none (killed, failed early)."""
        lines = self.stdout_path.read_text(errors="replace").strip().splitlines()
        if not lines:
            return None
        try:
            summary = json.loads(lines[-1])
        except ValueError:
            return None
        return summary if isinstance(summary, dict) else None


# --- Outcomes and the table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One scenario's count; `lost` must be 0 and `unexpected` empty."""

    scenario: str
    recorded: int
    published_unique: int
    lost: int
    duplicates: int
    in_doubt: int  # at the exporter
    in_doubt_at_pubsub: int  # below the gateway
    exporter_runs: int
    why: str
    lost_ids: frozenset[str] = frozenset()
    unexpected_ids: frozenset[str] = frozenset()
    duplicated_ids: frozenset[str] = frozenset()


@dataclass
class FaultTable:
    """The rows of docs/faults.md, in the order the scenarios ran."""

    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def render(self) -> str:
        lines = [
            "| scenario | recorded | published (unique) | lost | duplicates | why duplicates |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for o in self.outcomes:
            lines.append(
                f"| {o.scenario} | {o.recorded:,} | {o.published_unique:,} | {o.lost} | {o.duplicates:,} | {o.why} |"
            )
        return "\n".join(lines) + "\n"


# --- The pipeline --------------------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    """One database, one gateway on one topic, and the exporter runs a scenario starts."""

    db: QueueDb
    gateway: GatewayProcess
    gateway_env: dict[str, str]
    front: PubSubFront
    collector: Collector
    license_key: str
    workdir: Path
    exporter_env: dict[str, str]
    exporters: list[ExporterProcess] = field(default_factory=list)
    gateway_logs: list[Path] = field(default_factory=list)
    doubtful: set[str] = field(default_factory=set)
    runs: int = 0

    # exporter runs

    def start_exporter(self, **overrides: str) -> ExporterProcess:
        env = {**self.exporter_env, "TELEMETRY_GATEWAY_ADDR": self.gateway.url, **overrides}
        exporter = ExporterProcess(env, self.workdir, f"exporter-{len(self.exporters) + 1}")
        self.exporters.append(exporter)
        self.runs += 1
        return exporter

    def export_once(self, timeout: float = 60.0, **overrides: str) -> ExporterProcess:
        exporter = self.start_exporter(**overrides)
        exporter.wait(timeout)
        return exporter

    def wait_mid_run(self, exporter: ExporterProcess, exported_at_least: int, timeout: float = 60.0) -> None:
        """Waits until the run has settled some batches and holds others (leased, unsettled): mid-stream.

        Fails if the run ends first: a fault injected after the run would prove nothing.
        """

        def mid_run() -> bool:
            if not exporter.alive:
                raise AssertionError(f"{exporter.name} finished before the fault:\n{exporter.output()}")
            states = self.db.states()
            return states["exported"] >= exported_at_least and states["leased"] > 0

        wait_for(mid_run, timeout, f"{exporter.name} to export {exported_at_least} rows and hold more")

    def note_in_doubt(self) -> set[str]:
        """Remembers the rows in doubt now (right after a fault): the only rows allowed to be duplicated."""
        rows = self.db.in_doubt()
        self.doubtful |= rows
        return rows

    def export_until_empty(self, max_runs: int = 20, timeout: float = 180.0, **overrides: str) -> None:
        """Runs the exporter as the scheduler would, until nothing is left to export.

        Between runs it waits for leases left by dead runs to expire (the runs themselves never
        wait for them): bounded by `max_runs` and `timeout`.
        """
        deadline = time.monotonic() + timeout
        for _ in range(max_runs):
            states = self.db.states()
            if states["waiting"] == 0:
                return
            lease_left = self.db.lease_left()
            if lease_left > 0 and states["leased"] == states["waiting"]:
                time.sleep(min(lease_left + 0.1, max(deadline - time.monotonic(), 0)))
            if time.monotonic() > deadline:
                break
            self.export_once(timeout=max(deadline - time.monotonic(), 5.0), **overrides)
        states = self.db.states()
        assert states["waiting"] == 0, f"backlog not empty after {max_runs} runs: {states}"

    # the gateway

    def kill_gateway(self) -> None:
        """SIGKILL to the gateway and its workers at once, as an out-of-memory kill or a host failure."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.gateway.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.gateway.process.wait(timeout=10)
        self.gateway.stop()

    def restart_gateway(self) -> None:
        """A new gateway process on the same port: the exporter's address does not change."""
        log_path = self.workdir / f"gateway-{len(self.gateway_logs) + 1}.log"
        self.gateway = start_gateway(self.gateway_env, port=self.gateway.port, log_path=log_path)
        self.gateway_logs.append(log_path)

    # the count

    def tally(self, scenario: str, recorded: list[str], why: str) -> Outcome:
        """Pulls everything and compares it with `recorded`; the queue must be settled for good."""
        states = self.db.states()
        assert states == {"exported": len(recorded), "quarantined": 0, "waiting": 0, "leased": 0}, states
        expected = set(recorded)
        self.collector.collect(expected)
        exporter_doubt = set(self.doubtful)
        pubsub_doubt = {i for call in self.front.in_doubt() for i in call.event_ids}
        self.doubtful |= pubsub_doubt
        counts = self.collector.counts()
        published = set(counts)
        duplicated = {event_id for event_id, n in counts.items() if n > 1}
        return Outcome(
            scenario=scenario,
            recorded=len(recorded),
            published_unique=len(published & expected),
            lost=len(expected - published),
            duplicates=sum(n - 1 for n in counts.values()),
            in_doubt=len(exporter_doubt),
            in_doubt_at_pubsub=len(pubsub_doubt),
            exporter_runs=self.runs,
            why=why,
            lost_ids=frozenset(expected - published),
            unexpected_ids=frozenset(published - expected),
            duplicated_ids=frozenset(duplicated),
        )

    def stop(self) -> None:
        for exporter in self.exporters:
            if exporter.alive:
                exporter.kill()
        self.gateway.stop()
        self.front.stop()
        self.db.close()


def assert_nothing_lost(outcome: Outcome, pipeline: Pipeline) -> None:
    """The suite's core claim: every recorded event reached Pub/Sub, nothing else did, and every
    duplicate is an event that was in doubt at a fault (at the exporter or below the gateway)."""
    assert outcome.lost == 0, f"{outcome.lost} events lost, e.g. {sorted(outcome.lost_ids)[:3]}"
    assert outcome.unexpected_ids == frozenset(), f"unrecorded IDs published: {sorted(outcome.unexpected_ids)[:3]}"
    assert outcome.published_unique == outcome.recorded
    stray = outcome.duplicated_ids - pipeline.doubtful
    assert not stray, f"{len(stray)} duplicated events were never in doubt, e.g. {sorted(stray)[:3]}"
