"""The functions' door under a real functions-framework process: only POST runs a job, and an
oversized body is refused as it streams, without the process ever holding it."""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Iterator

import pytest

from localdev.functions import FunctionProcess, start_function

from .conftest import DAY

MIB = 1024 * 1024
STREAMED_BYTES = 200 * MIB


@pytest.fixture(scope="module")
def cleanup_function(database_url) -> Iterator[FunctionProcess]:
    with start_function("cleanup_exported_events", {"DATABASE_URL": database_url, "LOG_LEVEL": "info"}) as function:
        yield function


def group_peak_rss_kib(leader_pid: int) -> int:
    """The sum of peak resident memory (VmHWM) over every process of the leader's process group."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The process group is the 5th field; the 2nd (the name) may contain spaces, so split after it.
                pgrp = int(stat.read().rsplit(")", 1)[1].split()[2])
            if pgrp != leader_pid:
                continue
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    return total


def stream_chunked(port: int, total: int, piece: int = MIB) -> tuple[int, bytes]:
    """POSTs up to `total` bytes as a chunked body, stopping as soon as an answer arrives.

    Returns (bytes of body sent before the answer was seen, the answer's raw bytes).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"User-Agent: Google-Cloud-Scheduler\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n" % piece + b"x" * piece + b"\r\n"
        sent = 0
        answered = False
        while sent < total and not answered:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server closed its side: its answer is already on the way
            sent += piece
            answered = bool(select.select([sock], [], [], 0)[0])
        if not answered and sent >= total:
            sock.sendall(b"0\r\n\r\n")  # the body's end: a server that waits for it answers now
        answer = b""
        deadline = time.monotonic() + 30
        while b"\r\n\r\n" not in answer or not _complete(answer):
            if time.monotonic() > deadline:
                break
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        return sent, answer
    finally:
        sock.close()


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_a_200_mib_chunked_body_is_refused_while_it_streams_and_never_held(cleanup_function, conn, queue):
    queue.add("exported 2 days ago", age=3 * DAY, exported_ago=2 * DAY)  # what a run would delete
    before = group_peak_rss_kib(cleanup_function.process.pid)

    sent, answer = stream_chunked(cleanup_function.port, STREAMED_BYTES)

    after = group_peak_rss_kib(cleanup_function.process.pid)
    print(f"peak RSS of the function's process group: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert json.loads(body) == {"error": "body is over the 65536 byte limit (refused after reading 65537 bytes)"}
    # The answer came while the body was still streaming: the function never waited for its end.
    assert sent < STREAMED_BYTES
    # Reading 200 MiB whole grew the process group's peak by about 180 MB; refusing as it streams
    # grows it by what a few socket buffers hold. 32 MiB leaves room for the noise of a shared machine.
    grown_mib = (after - before) / 1024
    assert grown_mib < 32, f"peak memory grew by {grown_mib:.1f} MiB while refusing a streamed body"
    assert queue.labels() == {"exported 2 days ago": 1}  # no job ran
    # And the function still serves the next request.
    assert cleanup_function.call()[0] == 200
    assert queue.labels() == {}


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_post_runs_a_job(cleanup_function, conn, queue, method):
    queue.add("exported 2 days ago", age=3 * DAY, exported_ago=2 * DAY)

    status, body = cleanup_function.call(b"", method=method)

    assert status == 405
    if method != "HEAD":  # a HEAD answer has no body
        assert body == {"error": f"method {method} not allowed; use POST"}
    assert queue.labels() == {"exported 2 days ago": 1}
