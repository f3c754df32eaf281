"""Running sandbox applications on loopback ports, in a background thread or the foreground."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


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


class RunningServer:
    """A WSGI app served on 127.0.0.1 by a threaded werkzeug server in a daemon thread."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
    ) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            app,
            threaded=True,
            request_handler=_QuietHandler if quiet else _LoggingHandler,
        )
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> RunningServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
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
