"""Where a batch is worked: prepared in a pool off the event loop, then published from the gateway process.

Decoding, redacting and rendering events as JSON is CPU-bound Python: within one process the
GIL caps it at one core, shared with gRPC and the event loop. With TELEMETRY_GATEWAY_WORKERS=N
(default: one per CPU) batches are prepared in N worker processes, so an instance with several
vCPUs uses them; the batches of one stream are spread over the workers and their responses
still go back in order. With 0, batches are prepared on threads of the gateway process itself
(one process, least memory).

A worker hands back whole serialized PublishRequests and is free for the next batch at once;
the one publisher of the gateway process sends them (`publisher.py`) while the workers go on
preparing, so no worker sits idle waiting for Pub/Sub, and the requests in flight are bounded
in one place.

Workers are started with `spawn`, never `fork`: forking a process that runs gRPC's threads is
unsafe. If a worker dies (out of memory, killed), its batches report nothing published, the
exporter resends them, and the pool is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gateway_run import batches
from gateway_run.batches import BatchResult
from gateway_run.publisher import Publisher, make_publisher
from gateway_run.pubsub_messages import StreamContext
from gateway_run.settings import Settings

logger = logging.getLogger(__name__)

WARM_UP_LINGER_SECONDS = 0.2


class Workers:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._executor: Executor | None = None
        self._broken = False
        self._replacing: asyncio.Lock | None = None
        self._publisher: Publisher | None = None

    @property
    def in_process(self) -> bool:
        return self._settings.workers == 0

    @property
    def healthy(self) -> bool:
        return self._executor is not None and not self._broken

    async def start(self) -> None:
        """Builds the publisher, starts the workers and waits until each is set up (a bad setup fails here)."""
        self._replacing = asyncio.Lock()
        publisher = make_publisher(self._settings)
        await publisher.start()
        self._publisher = publisher
        self._executor = self._new_executor()
        await self._warm_up()

    async def run(self, context: StreamContext, raw_request: bytes, events: int) -> BatchResult:
        """Processes one events message; never raises for a failed batch, reports it as nothing published."""
        executor, publisher = self._executor, self._publisher
        if executor is None or publisher is None:
            return _nothing_published(events, "the gateway is stopping")
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(executor, batches.prepare_batch, context, raw_request)
            return await batches.publish_batch(prepared, publisher, context)
        except BrokenProcessPool:
            logger.error("a worker process died: replacing the pool", extra={"request_id": context.request_id})
            await self._replace(executor)
            return _nothing_published(events, "a worker process died")
        except RuntimeError as error:
            # Submitting to a pool that is shutting down.
            return _nothing_published(events, str(error))
        except Exception as error:
            logger.exception("batch failed unexpectedly", extra={"request_id": context.request_id})
            return _nothing_published(events, f"{type(error).__name__}: {error}")

    async def stop(self, timeout: float) -> None:
        """Lets running batches finish for up to `timeout` seconds, then ends the workers and the publisher."""
        executor, self._executor = self._executor, None
        publisher = self._publisher
        if executor is None:
            return
        deadline = time.monotonic() + max(timeout, 0.1)
        done = asyncio.get_running_loop().run_in_executor(None, _shutdown, executor)
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=max(deadline - time.monotonic(), 0.1))
        except TimeoutError:
            logger.error("workers did not finish in time: ending them", extra={"timeout": timeout})
            for child in multiprocessing.active_children():
                child.terminate()
        if publisher is not None:
            # Requests still in flight get what is left of the grace; past it they are not acknowledged.
            await publisher.stop(deadline - time.monotonic())
            self._publisher = None

    def _new_executor(self) -> Executor:
        settings = self._settings
        if self.in_process:
            batches.init_worker(settings, in_child_process=False)
            # The GIL lets one thread prepare at a time: more would only take turns.
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        return ProcessPoolExecutor(
            max_workers=settings.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=batches.init_worker,
            initargs=(settings, True),
        )

    async def _warm_up(self) -> None:
        if self.in_process:
            return
        loop = asyncio.get_running_loop()
        # One probe per process, submitted together: the pool starts every process now, and each
        # probe lingers briefly so that no process takes two (a failing set-up then fails here).
        probes = [
            loop.run_in_executor(self._executor, batches.probe_worker, self._settings, WARM_UP_LINGER_SECONDS)
            for _ in range(self._settings.workers)
        ]
        pids = await asyncio.gather(*probes)
        logger.info("workers started", extra={"workers": self._settings.workers, "pids": sorted(set(pids))})

    async def _replace(self, broken: Executor) -> None:
        assert self._replacing is not None
        async with self._replacing:
            if self._executor is not broken:
                return  # another batch replaced it already
            self._broken = True
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
            try:
                await self._warm_up()
            except (BrokenProcessPool, OSError) as error:
                logger.error("replacement workers did not start", extra={"error": str(error)})
                return
            self._broken = False


def _shutdown(executor: Executor) -> None:
    executor.shutdown(wait=True, cancel_futures=True)


def _nothing_published(events: int, reason: str) -> BatchResult:
    return BatchResult(received=events, failed=events, first_error=reason)
