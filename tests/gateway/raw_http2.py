"""Just enough HTTP/2 over a raw socket to behave as no gRPC library would: stop halfway through the
preface, open a call and never send its message, leave pings unanswered, ping too often.

Frames are written by hand (RFC 9113 section 4.1) and headers as HPACK literals without indexing
(RFC 7541 section 6.2.2), which every decoder must accept.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
NO_ERROR, ENHANCE_YOUR_CALM = 0x0, 0xB


@dataclass(frozen=True)
class Frame:
    at: float  # seconds since the connection was opened
    kind: int
    flags: int
    stream: int
    payload: bytes

    @property
    def goaway_error(self) -> int:
        return struct.unpack(">I", self.payload[4:8])[0]

    @property
    def goaway_debug(self) -> bytes:
        return self.payload[8:]


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _integer(value: int, prefix_bits: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    encoded = [limit]
    value -= limit
    while value >= 128:
        encoded.append((value & 127) | 128)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def header_block(path: str, authority: str) -> bytes:
    """The request headers of a gRPC call to `path`, as HPACK literals."""
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    block = b""
    for name, value in headers:
        block += b"\x00" + _integer(len(name), 7) + name.encode() + _integer(len(value), 7) + value.encode()
    return block


class RawConnection:
    """One TCP connection to `address` (host:port); nothing is sent until told."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.address = address
        self.socket = socket.create_connection((host, int(port)), timeout=10)
        self.opened = time.monotonic()
        self.answer_pings = True
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def start_http2(self) -> None:
        """The whole client preface: the magic and an empty SETTINGS frame."""
        self.send(PREFACE + frame(SETTINGS, 0, 0))

    def open_call(self, path: str, stream: int = 1) -> None:
        """Sends a call's headers and nothing more: the call stays open, waiting for its message."""
        self.send(frame(HEADERS, FLAG_END_HEADERS, stream, header_block(path, self.address)))

    def ping(self) -> None:
        self.send(frame(PING, 0, 0, b"12345678"))

    def frames_until_closed(self, within: float, every: float | None = None, action=None) -> tuple[list[Frame], float]:
        """Reads (acknowledging SETTINGS, and pings while `answer_pings`) until the server closes the connection.

        Calls `action(self)` every `every` seconds meanwhile. Returns the frames and the time the
        connection closed, in seconds since it was opened; raises AssertionError if still open after `within`.
        """
        frames: list[Frame] = []
        deadline = time.monotonic() + within
        next_action = time.monotonic()
        while time.monotonic() < deadline:
            if action is not None and time.monotonic() >= next_action:
                try:
                    action(self)
                except OSError:
                    return frames, time.monotonic() - self.opened
                next_action += every or 1.0
            wait = 0.5 if action is None else max(min(next_action - time.monotonic(), 0.5), 0.01)
            try:
                received = self._read_frame(wait)
            except TimeoutError:
                continue
            except (EOFError, ConnectionResetError):
                return frames, time.monotonic() - self.opened
            if received is not None:
                frames.append(received)
        raise AssertionError(f"the connection was still open {within:.0f} s later; frames: {frames}")

    def close(self) -> None:
        self.socket.close()

    def _read_frame(self, timeout: float) -> Frame | None:
        self.socket.settimeout(timeout)
        self._fill(9)
        length = int.from_bytes(self._buffer[:3], "big")
        self.socket.settimeout(10)
        self._fill(9 + length)
        kind, flags = self._buffer[3], self._buffer[4]
        stream = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
        payload, self._buffer = self._buffer[9 : 9 + length], self._buffer[9 + length :]
        if kind == SETTINGS and not flags & FLAG_ACK:
            self.send(frame(SETTINGS, FLAG_ACK, 0))
        if kind == PING and not flags & FLAG_ACK and self.answer_pings:
            self.send(frame(PING, FLAG_ACK, 0, payload))
        return Frame(time.monotonic() - self.opened, kind, flags, stream, payload)

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            data = self.socket.recv(65536)  # raises TimeoutError (socket.timeout) when nothing comes
            if not data:
                raise EOFError
            self._buffer += data
