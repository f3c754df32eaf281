"""Running sandbox applications on loopback ports, in a background thread or the foreground."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import (
    LISTEN_QUEUE,
    BaseWSGIServer,
    WSGIRequestHandler,
    get_sockaddr,
    make_server,
    select_address_family,
)

POLL_SECONDS = 0.05


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every request to stderr."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        # The app sends Date from the sandbox clock; the server must not add the real one.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", "sagesql-sandbox")


class _LoggingHandler(_QuietHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        WSGIRequestHandler.log_request(self, *args, **kwargs)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (OSError if it cannot be had)."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(LISTEN_QUEUE)
    except BaseException:
        sock.close()
        raise
    return sock


class RunningServer:
    """A WSGI app served on 127.0.0.1 by a threaded werkzeug server in a daemon thread."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
    ) -> None:
        self.app = app
        # werkzeug answers a failed bind with sys.exit(1); bind here so that the caller
        # gets the OSError (port in use...) and can say so.
        sock = _listen(host, port)
        try:
            self._server: BaseWSGIServer = make_server(
                host,
                port,
                app,
                threaded=True,
                request_handler=_QuietHandler if quiet else _LoggingHandler,
                fd=sock.fileno(),
            )
        finally:
            sock.close()  # the server holds its own duplicate of the socket
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port = self._server.port
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self._stop_lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"http://{host}:{self.port}"

    def start(self) -> RunningServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop`` is called from another one."""
        self._serving.set()
        try:
            # A short poll keeps stop() quick (it waits for the loop to notice).
            self._server.serve_forever(poll_interval=POLL_SECONDS)
        finally:
            self._serving.clear()

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice, or before ``start``."""
        with self._stop_lock:
            if self._closed:
                return
            self._closed = True
        # shutdown() waits for serve_forever to notice, which never happens if it never ran.
        if self._serving.is_set() or (self._thread is not None and self._thread.is_alive()):
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
