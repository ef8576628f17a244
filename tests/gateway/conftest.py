"""Fixtures of the gateway tests: identities, emulator topics and one shared real gateway process."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from gateway_testing import INSTANCE_ID, Gateway, PubSub, ServiceToken, gateway_env

from localdev.gateway import DevelopmentLicense, development_license, start_gateway


@pytest.fixture(scope="session")
def pubsub(pubsub_emulator) -> PubSub:
    return PubSub()


@pytest.fixture(scope="session")
def dev_license() -> DevelopmentLicense:
    return development_license()


@pytest.fixture(scope="session")
def license_key(dev_license: DevelopmentLicense) -> str:
    return dev_license.issue(licensee="Acme Corp", instance_id=INSTANCE_ID)


@pytest.fixture(scope="session")
def service_token() -> ServiceToken:
    return ServiceToken(secrets.token_urlsafe(32))


@pytest.fixture(scope="session")
def gateway(pubsub: PubSub, dev_license: DevelopmentLicense, service_token: ServiceToken) -> Iterator[Gateway]:
    """One gateway for the tests that need no special settings, on topics of its own."""
    topic_id, subscription = pubsub.topic("events")
    deadletter_id, deadletter_subscription = pubsub.topic("deadletter")
    env = gateway_env(
        dev_license, service_token, TELEMETRY_PUBSUB_TOPIC=topic_id, TELEMETRY_PUBSUB_DEADLETTER_TOPIC=deadletter_id
    )
    with start_gateway(env) as process:
        yield Gateway(process, subscription, deadletter_subscription, topic_id)
