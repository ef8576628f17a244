"""Processes that turn blocks of work into results, handed back in the order the blocks were given.

Built on plain processes and pipes rather than a pool executor, for one property: a process
that dies (killed, out of memory) is noticed at once, as the end of its pipe, and nothing ever
waits on it. Python 3.11's ProcessPoolExecutor could hang in its shutdown when a worker died
with a large block still queued for it, which would stall a backfill instead of failing it.

Each process has one pipe and at most one block at a time: it is given its next block as soon
as its previous result is taken, so it works while the caller uses that result. With one block
each, neither side can block the other: a process writes a result only after reading its
whole block, and the caller writes a block only to a process that is waiting for one.

Processes are started with `spawn`, never `fork`: the caller may hold threads (a database
driver's). They are always ended when the iteration ends, however it ends; they hold nothing
that needs a clean stop. If the caller itself is killed, each process sees its pipe end and exits.
"""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

# Marks the end of the blocks (a block itself may be anything but None, the signal to stop).
_NO_MORE = object()
# How long a process that was told to stop may take before it is ended anyway.
_STOP_SECONDS = 5.0


class ProcessDied(RuntimeError):
    """A process died or failed unexpectedly; nothing it was given is trusted."""


class BlockFailed(Exception):
    """The work raised an expected error for a block: `error` is that exception, as raised in the process."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def results_in_order(
    blocks: Iterable[Any],
    work: Callable[[Any], Any],
    processes: int,
    setup: Callable[..., None] | None = None,
    setup_arguments: tuple[Any, ...] = (),
    expected_errors: tuple[type[BaseException], ...] = (),
) -> Iterator[Any]:
    """`work(block)` for each block, computed by `processes` processes, yielded in the blocks' order.

    `work` and `setup` must be importable module-level functions; `setup(*setup_arguments)`
    runs once in each process before its first block. An exception of `expected_errors`
    raised by `work` is raised here, inside `BlockFailed`, when its block's turn comes.

    Raises:
        BlockFailed: `work` raised one of `expected_errors` for a block.
        ProcessDied: a process died, or `work` raised anything else (the process prints its traceback on
            its standard error, as a bug in the caller's own process would; the message is one line).
    """
    if processes < 1:
        raise ValueError(f"at least one process is needed, not {processes}")  # else no block would be worked
    context = multiprocessing.get_context("spawn")
    finished = False
    started: list[tuple[Any, Connection]] = []
    try:
        for _ in range(processes):
            ours, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=_serve, args=(theirs, work, setup, setup_arguments, expected_errors), daemon=True
            )
            process.start()
            theirs.close()  # only the process holds its end now: its death closes the pipe
            started.append((process, ours))
        pipes = [pipe for _, pipe in started]
        remaining = iter(blocks)
        given = 0
        for block, pipe in zip(itertools.islice(remaining, processes), pipes, strict=False):
            _send(pipe, block)
            given += 1
        # Block n goes to process n % processes, so results are taken round the processes in turn.
        for taken in range(sys.maxsize):
            if taken == given:
                finished = True
                return
            pipe = pipes[taken % processes]
            outcome = _receive(pipe)
            following = next(remaining, _NO_MORE)
            if following is not _NO_MORE:
                _send(pipe, following)  # before the caller uses this result, so the process is never idle
                given += 1
            yield _unwrap(outcome)
    finally:
        _stop(started, politely=finished)


def _send(pipe: Connection, block: Any) -> None:
    try:
        pipe.send(block)
    except (BrokenPipeError, ConnectionResetError, EOFError) as error:
        raise ProcessDied(f"died: its pipe ended ({type(error).__name__})") from None


def _receive(pipe: Connection) -> tuple[str, Any]:
    try:
        return pipe.recv()
    except (EOFError, ConnectionResetError, OSError) as error:
        raise ProcessDied(f"died: its pipe ended ({type(error).__name__})") from None


def _unwrap(outcome: tuple[str, Any]) -> Any:
    kind, value = outcome
    if kind == "result":
        return value
    if kind == "expected":
        raise BlockFailed(value)
    raise ProcessDied(f"failed: {value}")


def _stop(started: list[tuple[Any, Connection]], politely: bool) -> None:
    """Ends every process: told to stop when all went well, else killed (one may be stuck writing a result)."""
    for process, pipe in started:
        if politely:
            try:
                pipe.send(None)
            except (OSError, EOFError):
                pass
        else:
            process.kill()
    for process, pipe in started:
        process.join(_STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
        pipe.close()


def _serve(
    pipe: Connection,
    work: Callable[[Any], Any],
    setup: Callable[..., None] | None,
    setup_arguments: tuple[Any, ...],
    expected_errors: tuple[type[BaseException], ...],
) -> None:
    """A process' loop: a block in, its outcome out, until told to stop (None) or the caller is gone."""
    # Ctrl-C reaches the whole process group: the caller handles it and ends this process, which
    # would otherwise print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if setup is not None:
        setup(*setup_arguments)
    while True:
        try:
            block = pipe.recv()
        except (EOFError, OSError):
            return
        if block is None:
            return
        try:
            outcome: tuple[str, Any] = ("result", work(block))
        except expected_errors as error:
            outcome = ("expected", error)
        except Exception:  # noqa: BLE001 - reported to the caller, which fails the whole run
            traceback.print_exc()
            outcome = ("failed", traceback.format_exc(limit=0).strip().splitlines()[-1])
        try:
            pipe.send(outcome)
        except (OSError, EOFError):
            return
