"""Sharing the workers between streams: in turn, and never waiting without bound.

Every stream (and every RecordEvent call) has a `Lane`. An accepted events message waits in
its lane for a turn; whenever a worker is free, the lane at the front of the ring starts its
oldest message and goes to the back of the ring if it has more. So with N streams waiting,
each gets every N-th turn whatever its backlog, and a stream with one message waits for at
most one message of each other stream: a small instance is never stuck behind a big one.

A message that has not started by its deadline (TELEMETRY_GATEWAY_MAX_QUEUE_WAIT after it was
accepted) closes its lane: it and every message behind it in the lane are withdrawn without
having started, so none of them is published, and the stream ends "gateway busy". Messages
of a lane start in order, so those that did start are the first ones: the stream answers
them, in order, before it ends.

Turns are counted against `capacity`, how many `Workers.run` calls run at once: one per
worker process, or the pool's threads when the batches run in the gateway process.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway_run.settings import Settings

T = TypeVar("T")

# Bounds of the retry delay a busy stream is given: come back soon, but not at once.
MIN_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
# Weight of the newest run in the running mean of run durations.
_MEAN_WEIGHT = 0.2


def capacity_of(settings: Settings) -> int:
    """How many batches the workers run at once (see workers.py: one per process, or the thread pool)."""
    return settings.workers if settings.workers > 0 else max(2, settings.publish_concurrency)


class NotStarted(Exception):
    """The message was withdrawn before its turn came: its lane closed. Nothing of it was published."""


class QueueWaitExceeded(NotStarted):
    """The message's deadline passed before its turn came; its lane is now closed."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"an events message waited {waited:.1f} s for a worker")
        self.waited = waited


class Scheduler:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._running = 0
        self._ring: deque[Lane] = deque()  # lanes with a waiting message, next turn first
        self._mean_run_seconds = 0.0

    def lane(self) -> Lane:
        return Lane(self)

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(len(lane._waiting) for lane in self._ring)

    def retry_delay(self) -> float:
        """Seconds after which a caller sent away busy should come back: about the time the queue takes to drain."""
        estimate = (self.waiting + self._running) * self._mean_run_seconds / self.capacity
        return float(min(MAX_RETRY_SECONDS, max(MIN_RETRY_SECONDS, math.ceil(estimate))))

    def _enqueue(self, lane: Lane) -> None:
        if lane not in self._ring:
            self._ring.append(lane)
        self._grant()

    def _dequeue(self, lane: Lane) -> None:
        if not lane._waiting and lane in self._ring:
            self._ring.remove(lane)

    def _grant(self) -> None:
        while self._running < self.capacity and self._ring:
            lane = self._ring.popleft()
            turn = lane._waiting.popleft()
            self._running += 1
            turn.set_result(None)
            if lane._waiting:
                self._ring.append(lane)

    def _finished(self, seconds: float | None) -> None:
        self._running -= 1
        if seconds is not None:
            if self._mean_run_seconds == 0.0:
                self._mean_run_seconds = seconds
            else:
                self._mean_run_seconds += _MEAN_WEIGHT * (seconds - self._mean_run_seconds)
        self._grant()


class Lane:
    """One stream's place in the ring: its messages start in the order they were accepted."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._waiting: deque[asyncio.Future[None]] = deque()
        self.closed = asyncio.Event()
        self.longest_wait = 0.0

    async def run(self, job: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Runs `job` in this lane's turn.

        Args:
            job: what to run once a worker is free (a `Workers.run` call).
            deadline: event-loop time by which the turn must have come.

        Raises:
            QueueWaitExceeded: the turn had not come by `deadline`; the lane is closed.
            NotStarted: the lane was closed before the turn came.
        """
        loop = asyncio.get_running_loop()
        queued = loop.time()
        await self._turn(deadline)
        started = loop.time()
        self.longest_wait = max(self.longest_wait, started - queued)
        try:
            result = await job()
        except BaseException:
            self._scheduler._finished(None)
            raise
        self._scheduler._finished(loop.time() - started)
        return result

    def close(self) -> None:
        """Withdraws every waiting message (they raise NotStarted) and refuses new ones."""
        self.closed.set()
        while self._waiting:
            self._waiting.popleft().cancel()
        self._scheduler._dequeue(self)

    async def _turn(self, deadline: float) -> None:
        if self.closed.is_set():
            raise NotStarted("the stream is ending")
        loop = asyncio.get_running_loop()
        queued = loop.time()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.append(turn)
        self._scheduler._enqueue(self)
        try:
            # asyncio.wait neither cancels `turn` on a timeout nor loses a grant made at the same moment.
            await asyncio.wait((turn,), timeout=max(deadline - loop.time(), 0.0))
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._scheduler._finished(None)  # granted, never used
            else:
                self._withdraw(turn)
            raise
        if turn.cancelled():
            raise NotStarted("the stream is ending")
        if turn.done():
            return
        self._withdraw(turn)
        self.close()
        raise QueueWaitExceeded(loop.time() - queued)

    def _withdraw(self, turn: asyncio.Future[None]) -> None:
        if turn in self._waiting:
            self._waiting.remove(turn)
        turn.cancel()
        self._scheduler._dequeue(self)
