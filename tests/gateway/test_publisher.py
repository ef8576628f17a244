"""The publisher on its own, in this process: the in-flight bounds as a rule, and the reconnection after
Pub/Sub came back, through a TCP proxy that can cut the connection to the real emulator."""

from __future__ import annotations

import asyncio

import pytest
from gateway_testing import PROJECT, PubSub

from gateway_run.publisher import InFlight, PubSubPublisher
from gateway_run.pubsub_messages import Outgoing, PublishRequests
from gateway_run.settings import Settings
from localdev.tcp_proxy import TcpProxy


def test_in_flight_admits_while_every_bound_holds_and_a_lone_oversized_request() -> None:
    async def scenario() -> list[int]:
        in_flight = InFlight(max_requests=3, max_messages=100, max_bytes=1000)
        seen: list[tuple[int, int, int]] = []
        release = asyncio.Event()

        async def hold(messages: int, size: int) -> None:
            async with in_flight.hold(messages, size):
                seen.append((in_flight.requests, in_flight.messages, in_flight.bytes))
                await release.wait()

        async def admitted(*requests: tuple[int, int]) -> list[tuple[int, int, int]]:
            seen.clear()
            release.clear()
            tasks = [asyncio.create_task(hold(*r)) for r in requests]
            await asyncio.sleep(0.05)
            admitted_now = list(seen)
            release.set()
            await asyncio.gather(*tasks)
            assert (in_flight.requests, in_flight.messages, in_flight.bytes) == (0, 0, 0)
            return admitted_now

        return [
            len(await admitted((10, 10), (10, 10), (10, 10), (10, 10))),  # requests: 3 of 4
            len(await admitted((60, 10), (60, 10))),  # messages: 1 of 2
            len(await admitted((1, 600), (1, 600))),  # bytes: 1 of 2
            len(await admitted((500, 5000), (1, 1))),  # alone over both budgets; the next waits for it
        ]

    assert asyncio.run(scenario()) == [3, 1, 1, 1]


def test_after_an_outage_long_enough_for_grpc_to_back_off_publishing_resumes_at_once(
    pubsub: PubSub, pubsub_emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic_id, _ = pubsub.topic("reconnect")
    host, port = pubsub_emulator.host_port.rsplit(":", 1)
    settings = Settings(topic=f"projects/{PROJECT}/topics/{topic_id}", publish_timeout=3.0)
    collector = PublishRequests(settings.topic)
    collector.add(Outgoing("event-1", b"{}", {"event.id": "event-1"}))
    (request,) = collector.requests()

    with TcpProxy(host, int(port)).start() as proxy:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", proxy.host_port)

        async def scenario() -> tuple[list[str], int]:
            publisher = PubSubPublisher(settings)
            await publisher.start()
            try:
                assert len(await publisher.publish(request)) == 1
                proxy.cut()
                # Two failed requests, 6 s of refused connections: gRPC's reconnect backoff grows past 3 s.
                for _ in range(2):
                    with pytest.raises(Exception):  # noqa: B017 - whichever error the retry gives up with
                        await publisher.publish(request)
                proxy.restore()
                ids = list(await publisher.publish(request))  # within its 3 s deadline, or it raises
                return ids, publisher.clients_built
            finally:
                await publisher.stop(1.0)

        ids, clients = asyncio.run(scenario())

    assert len(ids) == 1 and ids[0]
    assert clients >= 2, "the publisher never replaced its client"


def test_in_flight_admits_in_arrival_order_so_a_big_request_is_not_overtaken() -> None:
    async def scenario() -> list[str]:
        in_flight = InFlight(max_requests=10, max_messages=100, max_bytes=1000)
        admitted: list[str] = []
        releases = {name: asyncio.Event() for name in ("first", "big", "small")}

        async def hold(name: str, size: int) -> None:
            async with in_flight.hold(1, size):
                admitted.append(name)
                await releases[name].wait()

        first = asyncio.create_task(hold("first", 600))
        await asyncio.sleep(0.01)
        big = asyncio.create_task(hold("big", 900))  # waits for "first"
        await asyncio.sleep(0.01)
        small = asyncio.create_task(hold("small", 100))  # would fit now, but "big" came first
        await asyncio.sleep(0.05)
        waiting_order = list(admitted)
        releases["first"].set()
        await asyncio.sleep(0.05)
        releases["big"].set()
        releases["small"].set()
        await asyncio.gather(first, big, small)
        return waiting_order + ["|"] + admitted

    assert asyncio.run(scenario()) == ["first", "|", "first", "big", "small"]
