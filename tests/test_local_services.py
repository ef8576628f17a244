"""The harness itself: the emulator and the throwaway Postgres are real and clean up after themselves."""

from __future__ import annotations

import os
import uuid

import pytest
from google.cloud import pubsub_v1

from localdev import processes
from localdev.postgres import start_cluster
from localdev.pubsub_emulator import EmulatorUnavailable, emulator_command, start_emulator


def test_the_emulator_carries_a_message_from_topic_to_subscription(pubsub_emulator):
    project = "harness-test"
    topic_id, subscription_id = f"topic-{uuid.uuid4().hex[:8]}", f"sub-{uuid.uuid4().hex[:8]}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=publisher.topic_path(project, topic_id)).name
    subscription = subscriber.create_subscription(
        name=subscriber.subscription_path(project, subscription_id), topic=topic
    ).name
    publisher.publish(topic, b"hello", origin="harness").result(timeout=30)
    response = subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
    [received] = response.received_messages
    assert received.message.data == b"hello"
    assert received.message.attributes["origin"] == "harness"
    assert os.environ["PUBSUB_EMULATOR_HOST"] == pubsub_emulator.host_port


def test_stopping_the_emulator_leaves_no_process_behind():
    try:
        emulator_command("127.0.0.1:1")
    except EmulatorUnavailable as error:
        pytest.skip(str(error))  # gcloud or java is missing: there is no emulator to start
    # Where both exist, an emulator that fails to start is a failure, not a skip.
    emulator = start_emulator()
    pgid = os.getpgid(emulator.process.pid)
    emulator.stop()
    assert not processes._group_alive(pgid)


def test_a_throwaway_cluster_restarts_on_its_port_and_is_removed(tmp_path):
    cluster = start_cluster()
    data_dir = cluster.data_dir
    try:
        cluster.restart()
        import pg8000.dbapi

        conn = pg8000.dbapi.connect(user="postgres", host="127.0.0.1", port=cluster.port, database="postgres")
        cursor = conn.cursor()
        cursor.execute("SHOW fsync")
        assert cursor.fetchone()[0] == "off"
        conn.close()
    finally:
        cluster.destroy()
    assert not data_dir.exists()
