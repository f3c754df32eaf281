"""A misbehaving HTTP server for the tests: raw sockets on loopback, one thread per connection.

Each request is read (request line, headers, a body by Content-Length) and handed to
the test's ``answer(request, client)``, which writes whatever bytes it likes to the
socket: a proper answer, a redirect, garbage, a body that never ends or trickles, or
nothing at all. Every answer closes its connection, so each request is a new one.
``stop()`` closes every socket, which ends the answers still running.

The ``send_*`` helpers are the usual misbehaviours.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class RawRequest:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes = b""
    args: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Answer = Callable[[RawRequest, "Client"], None]


class Client:
    """One connection: what the answer writes goes to the socket until it is closed."""

    def __init__(self, sock: socket.socket, server: HostileServer) -> None:
        self.sock = sock
        self.server = server

    @property
    def open(self) -> bool:
        return not self.server.stopping

    def send(self, data: bytes) -> bool:
        """Write; False once the client went away or the server is stopping."""
        if self.server.stopping:
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def sleep(self, seconds: float) -> bool:
        """Wait (False once the server is stopping)."""
        return not self.server.stop_event.wait(seconds)


class HostileServer:
    """``HostileServer(answer)``: ``url``, ``requests`` (every RawRequest), ``stop()``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[RawRequest] = []
        self.stop_event = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._clients.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            request = _read_request(sock)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            self.answer(request, Client(sock, self))
        except OSError:
            pass
        finally:
            with self._lock:
                if sock in self._clients:
                    self._clients.remove(sock)
            sock.close()

    def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close alone does not)
        self._listener.close()
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_request(sock: socket.socket) -> RawRequest | None:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    sock.settimeout(None)
    args = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    return RawRequest(method, target, headers, rest[:length], args)


# -- answers ----------------------------------------------------------------------------------


def head(status: int, reason: str = "X", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send_json(client: Client, data: Any, status: int = 200, **headers: str) -> None:
    body = json.dumps(data).encode()
    client.send(
        head(status, Content_Type="application/json", Content_Length=str(len(body)), **headers)
        + body
    )


def send_redirect(client: Client, status: int, location: str | None) -> None:
    extra = {"Location": location} if location is not None else {}
    client.send(head(status, "Moved", Content_Length="0", **extra))


def send_endless(
    client: Client,
    *,
    status: int = 200,
    block: bytes = b"[" + b'{"id": 1},' * 6553,
    limit: int | None = None,
    declared: int | None = None,
) -> int:
    """A body that never ends (chunked; or with a Content-Length of ``declared``),
    written as fast as the client reads, until it goes away or ``limit`` bytes went.
    Answers the bytes written."""
    sent = 0
    if declared is not None:
        client.send(head(status, Content_Type="application/json", Content_Length=str(declared)))
        while (limit is None or sent < limit) and client.send(block):
            sent += len(block)
        return sent
    client.send(head(status, Content_Type="application/json", Transfer_Encoding="chunked"))
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    while (limit is None or sent < limit) and client.send(chunk):
        sent += len(block)
    return sent


def send_trickle(client: Client, *, every: float, status: int = 200, headers: bool = False) -> None:
    """One byte at a time, every ``every`` seconds: of the body, or from the status line on."""
    if headers:
        data = head(status, Content_Type="application/json", Content_Length="100000")
    else:
        client.send(head(status, Content_Type="application/json", Content_Length="100000"))
        data = b"[" + b" " * 99999
    for byte in data:
        if not client.send(bytes([byte])) or not client.sleep(every):
            return


def send_silence(client: Client) -> None:
    """Nothing at all: the connection stays open until the client or the server gives up."""
    while client.open:
        try:
            client.sock.settimeout(0.05)
            if client.sock.recv(1) == b"":
                return
        except TimeoutError:
            continue
        except OSError:
            return


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
