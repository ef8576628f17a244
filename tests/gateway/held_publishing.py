"""A throttled gateway whose publishes a test can hold: one worker process, publishing through a
`PubSubFront` whose script keeps a publish call waiting until the test releases it.

A held batch keeps the only worker busy while other messages queue. With one worker, batches run
one at a time, so the order of the publish calls the front sees is the order in which the gateway
started the batches. (A uniquely named module, so that test modules can import it.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gateway_testing import PubSub, ServiceToken, gateway_env

from localdev.gateway import DevelopmentLicense, GatewayProcess, start_gateway
from localdev.pubsub_front import Action, PublishCall, PubSubFront
from telemetry_events import pb

# Longest a held publish call waits for its release: a failing test does not hang.
HOLD_LIMIT = 20.0


class Holds:
    """The front's script: a publish call carrying a held event waits until that event is released.

    It notes every publish call as it arrives, before holding it (the front records a call only once
    its script has decided).
    """

    def __init__(self) -> None:
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.arrivals: list[tuple[str, ...]] = []  # the event IDs of each publish call, in arrival order

    def hold(self, event_id: str, release_after: float = HOLD_LIMIT) -> threading.Event:
        gate = threading.Event()
        self._gates[event_id] = gate
        timer = threading.Timer(release_after, gate.set)
        timer.daemon = True
        timer.start()
        return gate

    def __call__(self, call: PublishCall) -> Action:
        with self._lock:
            self.arrivals.append(call.event_ids)
        for event_id in call.event_ids:
            gate = self._gates.get(event_id)
            if gate is not None:
                gate.wait(HOLD_LIMIT)
        return Action.FORWARD

    def release_all(self) -> None:
        for gate in self._gates.values():
            gate.set()


@dataclass
class Throttled:
    process: GatewayProcess
    front: PubSubFront
    holds: Holds
    subscription: str

    def start_order(self, batches: dict[str, list[pb.Event]]) -> list[str]:
        """The names of `batches` in the order their first event reached Pub/Sub's front."""
        name_of = {event.id: name for name, events in batches.items() for event in events}
        order: list[str] = []
        for event_ids in list(self.holds.arrivals):
            for event_id in event_ids:
                name = name_of.get(event_id)
                if name is not None and name not in order:
                    order.append(name)
        return order

    def wait_for_publish_of(self, event_id: str, timeout: float = 20.0) -> None:
        """Returns once a publish call carrying `event_id` reached the front (held or not): its batch started."""
        deadline = time.monotonic() + timeout
        while not any(event_id in event_ids for event_ids in list(self.holds.arrivals)):
            assert time.monotonic() < deadline, f"no publish of {event_id} within {timeout} s"
            time.sleep(0.05)


@contextmanager
def throttled_gateway(
    pubsub: PubSub, upstream: str, dev_license: DevelopmentLicense, service_token: ServiceToken, **extra: str
) -> Iterator[Throttled]:
    holds = Holds()
    topic_id, subscription = pubsub.topic("fair")
    front = PubSubFront(upstream, script=holds).start()
    env = gateway_env(
        dev_license,
        service_token,
        TELEMETRY_PUBSUB_TOPIC=topic_id,
        PUBSUB_EMULATOR_HOST=front.host_port,
        TELEMETRY_GATEWAY_WORKERS="1",
        TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY="4",
        **extra,
    )
    try:
        with start_gateway(env) as process:
            yield Throttled(process, front, holds, subscription)
    finally:
        holds.release_all()
        front.stop()
