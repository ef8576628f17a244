"""Fixtures of the fault suite: pipelines to break, services of its own to restart, and the table it writes.

Each scenario gets a fresh database and a fresh topic, so its count cannot mix with another's.
The session-wide Postgres and emulator are never restarted here: a scenario that restarts one
starts its own (`private_cluster`, `own_emulator`).

When any scenario ran, the session ends by writing build/fault-table.md (scripts/fault-table.sh
prints it, or copies it into docs/faults.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localdev.gateway import DevelopmentLicense, development_license, start_gateway
from localdev.postgres import PostgresCluster, PostgresUnavailable, start_cluster
from localdev.pubsub_emulator import EmulatorUnavailable, PubSubEmulator, RestartableEmulator
from localdev.pubsub_front import PubSubFront

from .harness import EXPORTER_DEFAULTS, INSTANCE_ID, PROJECT, Collector, FaultTable, Pipeline, PubSubAdmin, QueueDb

REPOSITORY = Path(__file__).resolve().parents[2]
TABLE_PATH = REPOSITORY / "build" / "fault-table.md"

_TABLE_HEADER = """\
<!-- Written by tests/faults (scripts/fault-table.sh). Every count is from this run. -->
"""


@pytest.fixture(scope="session")
def fault_table() -> Iterator[FaultTable]:
    table = FaultTable()
    yield table
    if table.outcomes:
        TABLE_PATH.parent.mkdir(exist_ok=True)
        TABLE_PATH.write_text(_TABLE_HEADER + table.render())


@pytest.fixture(scope="session")
def dev_license() -> DevelopmentLicense:
    return development_license()


@pytest.fixture(scope="session")
def license_key(dev_license: DevelopmentLicense) -> str:
    return dev_license.issue(licensee="Fault Suite", instance_id=INSTANCE_ID)


def gateway_settings(dev_license: DevelopmentLicense, topic: str, pubsub_host: str, **extra: str) -> dict[str, str]:
    """The gateway of a scenario: one worker (the machine has two cores for everything) and short timeouts."""
    return {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "TELEMETRY_PUBSUB_TOPIC": topic,
        "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY": dev_license.public_key,
        "PUBSUB_EMULATOR_HOST": pubsub_host,
        "TELEMETRY_GATEWAY_WORKERS": "1",
        "TELEMETRY_GATEWAY_PUBLISH_TIMEOUT": "3",
        "TELEMETRY_GATEWAY_HEALTH_INTERVAL": "0.5",
        "TELEMETRY_GATEWAY_SHUTDOWN_GRACE": "2",
        **extra,
    }


def exporter_settings(database_url: str, license_key: str, **extra: str) -> dict[str, str]:
    """The environment of an exporter run: this process' own, minus any setting of the product's."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEMETRY_", "DB_")) and key not in ("DATABASE_URL", "INSTANCE_CONNECTION_NAME")
    }
    return {
        **inherited,
        **EXPORTER_DEFAULTS,
        "DATABASE_URL": database_url,
        "TELEMETRY_LICENSE_KEY": license_key,
        "TELEMETRY_INSTANCE_ID": INSTANCE_ID,
        "TELEMETRY_EXTERNAL_URL": "https://faults.example.com",
        **extra,
    }


MakePipeline = Callable[..., Pipeline]


@pytest.fixture
def make_pipeline(
    postgres_server, pubsub_emulator: PubSubEmulator, dev_license: DevelopmentLicense, license_key: str, tmp_path: Path
) -> Iterator[MakePipeline]:
    """Builds pipelines; everything they started is stopped and their databases dropped afterwards."""
    pipelines: list[Pipeline] = []
    fronts: list[PubSubFront] = []
    databases: list[str] = []

    def make(
        *,
        database_url: str | None = None,
        emulator: str | None = None,
        pubsub_upstream: str | None = None,
        gateway_extra: dict[str, str] | None = None,
        exporter_extra: dict[str, str] | None = None,
    ) -> Pipeline:
        """
        Args:
            database_url: a migrated-or-empty database; a fresh one on the session server when None.
            emulator: host:port of the emulator holding the topic; the session's when None.
            pubsub_upstream: where the gateway's Pub/Sub front forwards to (a proxy); `emulator` when None.
        """
        if database_url is None:
            name = postgres_server.create_database(f"faults_{len(databases)}")
            databases.append(name)
            database_url = postgres_server.url_for(name)
        db = QueueDb(database_url)
        db.migrate()
        emulator_host = emulator or pubsub_emulator.host_port
        admin = PubSubAdmin(emulator_host)
        topic, subscription = admin.create(f"events-{uuid.uuid4().hex[:10]}")
        # Every publish goes through a front that forwards it and notes whether its answer got back.
        front = PubSubFront(pubsub_upstream or emulator_host).start()
        fronts.append(front)
        env = gateway_settings(dev_license, topic, front.host_port, **(gateway_extra or {}))
        workdir = tmp_path / f"pipeline-{len(pipelines) + 1}"
        workdir.mkdir()
        log_path = workdir / "gateway-0.log"
        gateway = start_gateway(env, log_path=log_path)
        pipeline = Pipeline(
            db=db,
            gateway=gateway,
            gateway_env=env,
            front=front,
            collector=Collector(admin, subscription),
            license_key=license_key,
            workdir=workdir,
            exporter_env=exporter_settings(database_url, license_key, **(exporter_extra or {})),
            gateway_logs=[log_path],
        )
        pipelines.append(pipeline)
        return pipeline

    try:
        yield make
    finally:
        for pipeline in pipelines:
            pipeline.stop()
        for front in fronts[len(pipelines) :]:
            front.stop()  # a pipeline whose gateway never started
        for name in databases:
            postgres_server.drop_database(name)


@pytest.fixture
def private_cluster() -> Iterator[PostgresCluster]:
    """A Postgres of this test's own, to restart; with synchronous commits, as Cloud SQL runs.

    (The throwaway clusters turn synchronous_commit off for speed; a commit acknowledged before a
    crash could then vanish with it, which no production database does.)
    """
    try:
        cluster = start_cluster()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    try:
        admin = QueueDb(cluster.admin_url).connect()
        try:
            admin.autocommit = True
            cursor = admin.cursor()
            for statement in (
                "CREATE DATABASE faults",
                "ALTER SYSTEM SET synchronous_commit = on",
                "SELECT pg_reload_conf()",
            ):
                cursor.execute(statement)
        finally:
            admin.close()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def own_emulator() -> Iterator[RestartableEmulator]:
    try:
        emulator = RestartableEmulator()
    except EmulatorUnavailable as error:
        pytest.skip(str(error))
    try:
        yield emulator
    finally:
        emulator.stop()
