"""Misbehaving HTTP servers on loopback, for the tests of what sagesql reads from them.

:class:`HostileServer` is a raw socket server: it reads each request (headers and a
Content-Length body), keeps it, and answers with a scripted behaviour, byte for byte,
which no well-behaved framework would send: an endless body, a trickle, a cut answer,
headers that never end, a hang. :class:`Recorder` is a plain werkzeug server that keeps
every request it gets (any method), to prove that nothing reached it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.wrappers import Request, Response

from sagesql.sandbox.server import RunningServer

# How long a hostile behaviour may go on at most (a safety net: tests end long before).
RUNAWAY = 30.0

Behaviour = Callable[[socket.socket, bytes, threading.Event], None]


class HostileServer:
    """A loopback HTTP server answering every request with ``behaviour(conn, request,
    stop)``; ``behaviour`` may be replaced between requests."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.stop_event = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)  # accept() wakes up to see stop
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            with self._lock:
                self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)  # a client that stops reading ends the behaviour
            try:
                request = read_request(conn)
            except OSError:
                return
            with self._lock:
                self.requests.append(request)
            with contextlib.suppress(OSError):
                self.behaviour(conn, request, self.stop_event)

    def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# -- behaviours -------------------------------------------------------------------------------


def raw(answer: bytes) -> Behaviour:
    """Send these bytes, then close."""

    def behave(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        conn.sendall(answer)

    return behave


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    """A well-formed answer with a Content-Length."""
    head = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return raw(f"HTTP/1.1 {status} X\r\n{lines}\r\n".encode() + body)


def json_answer(status: int, data: Any) -> Behaviour:
    return answer(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


def endless(status: int = 200, content_type: str = "application/json") -> Behaviour:
    """Headers without a length, then a body that never ends (as fast as it is read)."""

    def behave(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\n\r\n".encode())
        block = b'{"access_token": "' + b"x" * 65536
        ends = time.monotonic() + RUNAWAY
        while not stop.is_set() and time.monotonic() < ends:
            conn.sendall(block)

    return behave


def endless_chunked(status: int = 200) -> Behaviour:
    """A chunked body whose chunks never stop."""

    def behave(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"
        ends = time.monotonic() + RUNAWAY
        while not stop.is_set() and time.monotonic() < ends:
            conn.sendall(chunk)

    return behave


def trickle(head: bytes, every: float = 0.05, byte: bytes = b" ") -> Behaviour:
    """``head``, then one byte every ``every`` seconds, for ever."""

    def behave(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        conn.sendall(head)
        ends = time.monotonic() + RUNAWAY
        while not stop.is_set() and time.monotonic() < ends:
            conn.sendall(byte)
            time.sleep(every)

    return behave


def trickling_body(status: int = 200) -> Behaviour:
    return trickle(f"HTTP/1.1 {status} OK\r\nContent-Length: 100000\r\n\r\n".encode())


def trickling_headers(status: int = 200) -> Behaviour:
    """A status line, then header lines one byte at a time: the headers never end."""

    def behave(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 {status} OK\r\n".encode())
        ends = time.monotonic() + RUNAWAY
        while not stop.is_set() and time.monotonic() < ends:
            for byte in b"X-Slow: y\r\n":
                conn.sendall(bytes([byte]))
                time.sleep(0.02)

    return behave


def cut(status: int, body: bytes, content_type: str = "application/json") -> Behaviour:
    """Promise the whole body (Content-Length), send half of it, hang up."""

    def behave(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        conn.sendall(
            f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        conn.shutdown(socket.SHUT_RDWR)

    return behave


def hang(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    """Read the request, never answer."""
    stop.wait(RUNAWAY)


def drop(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    """Read the request, close without a word."""
    conn.shutdown(socket.SHUT_RDWR)


def redirect(status: int, location: str) -> Behaviour:
    return answer(status, b"moved", {"Location": location})


# -- a recorder ------------------------------------------------------------------------------


class Recorder:
    """A werkzeug server that keeps every request (method, path, headers, body) and
    answers 200: what arrives here arrived, whatever the method."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = RunningServer(self._app, "127.0.0.1", 0, quiet=True)
        self.server.start()
        self.url = self.server.url

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.seen.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "headers": dict(request.headers),
                    "body": request.get_data(),
                }
            )
        return Response("ok", status=200)(environ, start_response)

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def hostile(behaviour: Behaviour) -> Iterator[HostileServer]:
    with HostileServer(behaviour) as server:
        yield server
