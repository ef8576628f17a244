"""A TCP proxy on a free port that a test can cut, to make a service vanish and come back.

    proxy = TcpProxy("127.0.0.1", emulator_port).start()
    ...point a client at proxy.host_port...
    proxy.cut()        # every open connection is reset, new ones are refused (RST)
    proxy.restore()    # connections are accepted and forwarded again
    proxy.stop()

To the client, a cut looks exactly like the service's process dying: established
connections end with a reset, new ones fail. Unlike really stopping the service, the
service itself keeps running, so a test can still look at what it held at that moment
(messages a Pub/Sub emulator had accepted, for example) before restarting it.

Two threads per connection, one accept thread: meant for the handful of connections a
test makes, not for load.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from localdev.ports import free_port

_CHUNK = 65536
_ACCEPT_POLL_SECONDS = 0.2
_CONNECT_TIMEOUT_SECONDS = 5.0


def _reset(sock: socket.socket) -> None:
    """Closes `sock` with a TCP reset rather than an orderly FIN, as a dying process' kernel would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One client connection and its upstream twin; closing either ends both."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._closed = threading.Event()

    def pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                data = source.recv(_CHUNK)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            self.close(reset=False)

    def close(self, reset: bool) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream_host`:`upstream_port` until cut or stopped."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.accepted = 0
        self.refused = 0
        self.connections_cut = 0
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._refusing = False
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"tcp-proxy-{self.port}", daemon=True)
        self._acceptor.start()
        return self

    def cut(self) -> int:
        """Resets every open connection and refuses new ones until `restore()`; returns how many were cut."""
        with self._lock:
            self._refusing = True
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            pair.close(reset=True)
        self.connections_cut += len(pairs)
        return len(pairs)

    def restore(self) -> None:
        with self._lock:
            self._refusing = False

    def stop(self) -> None:
        self._stopping.set()
        self.cut()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refusing = self._refusing or self._stopping.is_set()
            if refusing:
                self.refused += 1
                _reset(client)
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=_CONNECT_TIMEOUT_SECONDS)
        except OSError:
            self.refused += 1
            _reset(client)
            return
        client.settimeout(None)
        upstream.settimeout(None)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream)
        with self._lock:
            self._pairs = {p for p in self._pairs if not p.closed}
            self._pairs.add(pair)
            self.accepted += 1
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=pair.pump, args=(source, target), daemon=True).start()
