"""The scheduler on its own: turns in rotation, the wait bound, withdrawal, and slots never leaked.

(The same rules through a real gateway: test_fair_scheduling.py.)
"""

from __future__ import annotations

import asyncio

import pytest

from gateway_run.scheduling import (
    MAX_RETRY_SECONDS,
    MIN_RETRY_SECONDS,
    Lane,
    NotStarted,
    QueueWaitExceeded,
    Scheduler,
    capacity_of,
)
from gateway_run.settings import Settings

LONG = 60.0  # a deadline that is never reached in these tests


class Recorder:
    """Jobs that note when they start and finish only when the test lets them."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._gates: dict[str, asyncio.Event] = {}

    def job(self, name: str):
        self._gates[name] = asyncio.Event()

        async def run() -> str:
            self.started.append(name)
            await self._gates[name].wait()
            return name

        return run

    def finish(self, name: str) -> None:
        self._gates[name].set()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def submit(lane: Lane, recorder: Recorder, name: str, deadline: float = LONG) -> asyncio.Task[str]:
    loop = asyncio.get_running_loop()
    return asyncio.create_task(lane.run(recorder.job(name), loop.time() + deadline))


def test_lanes_take_turns_whatever_their_backlog() -> None:
    async def scenario() -> list[str]:
        scheduler, recorder = Scheduler(capacity=1), Recorder()
        big, small, medium = scheduler.lane(), scheduler.lane(), scheduler.lane()
        tasks = [submit(big, recorder, f"big{n}") for n in range(1, 6)]
        await settle()
        tasks += [submit(small, recorder, "small1")]
        tasks += [submit(medium, recorder, f"medium{n}") for n in range(1, 3)]
        await settle()
        for _ in range(len(tasks)):
            recorder.finish(recorder.started[-1])
            await settle()
        await asyncio.gather(*tasks)
        assert scheduler.running == 0 and scheduler.waiting == 0
        return recorder.started

    started = asyncio.run(scenario())

    assert started == ["big1", "big2", "small1", "medium1", "big3", "medium2", "big4", "big5"]


def test_capacity_bounds_how_many_run_at_once() -> None:
    async def scenario() -> tuple[int, list[str]]:
        scheduler, recorder = Scheduler(capacity=2), Recorder()
        lanes = [scheduler.lane() for _ in range(3)]
        tasks = [submit(lane, recorder, f"job{n}") for n, lane in enumerate(lanes)]
        await settle()
        running = scheduler.running
        started_before = list(recorder.started)
        recorder.finish("job0")
        await settle()
        recorder.finish("job1")
        recorder.finish("job2")
        await asyncio.gather(*tasks)
        return running, started_before

    running, started_before = asyncio.run(scenario())

    assert (running, started_before) == (2, ["job0", "job1"])


def test_a_message_past_its_deadline_closes_its_lane_and_withdraws_the_rest() -> None:
    async def scenario() -> None:
        scheduler, recorder = Scheduler(capacity=1), Recorder()
        other, busy = scheduler.lane(), scheduler.lane()
        blocker = submit(other, recorder, "blocker")
        await settle()
        late = submit(busy, recorder, "late", deadline=0.05)
        behind = submit(busy, recorder, "behind")
        with pytest.raises(QueueWaitExceeded) as exceeded:
            await late
        with pytest.raises(NotStarted):
            await behind
        assert busy.closed.is_set() and exceeded.value.waited >= 0.05
        with pytest.raises(NotStarted):  # a closed lane takes nothing new
            await submit(busy, recorder, "after")
        recorder.finish("blocker")
        await blocker
        assert recorder.started == ["blocker"]
        assert (scheduler.running, scheduler.waiting) == (0, 0)

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_its_place_back_and_a_failing_job_its_slot() -> None:
    async def scenario() -> None:
        scheduler, recorder = Scheduler(capacity=1), Recorder()
        first, second, third = scheduler.lane(), scheduler.lane(), scheduler.lane()
        blocker = submit(first, recorder, "blocker")
        await settle()
        cancelled = submit(second, recorder, "cancelled")
        waiting = submit(third, recorder, "waiting")
        await settle()
        cancelled.cancel()
        await settle()
        assert scheduler.waiting == 1
        recorder.finish("blocker")
        await blocker
        await settle()
        recorder.finish("waiting")
        await waiting

        async def fails() -> None:
            raise RuntimeError("worker gone")

        with pytest.raises(RuntimeError):
            await first.run(fails, asyncio.get_running_loop().time() + LONG)
        assert (scheduler.running, scheduler.waiting) == (0, 0)
        assert recorder.started == ["blocker", "waiting"]

    asyncio.run(scenario())


def test_the_retry_delay_is_the_estimated_drain_time_within_its_bounds() -> None:
    async def scenario() -> list[float]:
        scheduler, recorder = Scheduler(capacity=2), Recorder()
        delays = [scheduler.retry_delay()]  # nothing measured yet: the minimum

        async def takes(seconds: float) -> None:
            await asyncio.sleep(seconds)

        await scheduler.lane().run(lambda: takes(0.2), asyncio.get_running_loop().time() + LONG)
        for count in (12, 700):
            blockers = [submit(scheduler.lane(), recorder, f"b{count}-{n}") for n in range(count)]
            await settle()
            delays.append(scheduler.retry_delay())
            for task in blockers:
                task.cancel()
            for name in list(recorder.started):
                recorder.finish(name)
            await asyncio.gather(*blockers, return_exceptions=True)
            recorder.started.clear()
        return delays

    delays = asyncio.run(scenario())

    assert delays[0] == MIN_RETRY_SECONDS == 1.0
    assert 2.0 <= delays[1] <= 3.0  # 12 jobs of about 0.2 s on 2 workers: 1.2 s and more, rounded up
    assert delays[2] == MAX_RETRY_SECONDS == 60.0  # 700 of them: 70 s, capped


@pytest.mark.parametrize(
    ("workers", "publish_concurrency", "capacity"),
    [(1, 4, 1), (3, 4, 3), (0, 4, 4), (0, 1, 2)],  # processes; or the in-process pool's threads
)
def test_capacity_is_what_the_workers_run_at_once(workers: int, publish_concurrency: int, capacity: int) -> None:
    assert capacity_of(Settings(workers=workers, publish_concurrency=publish_concurrency)) == capacity
