"""A running sandbox for one product: its app on a loopback port, and how to reach it."""

from __future__ import annotations

from dataclasses import replace
from types import TracebackType
from typing import Any

from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.products import SITES
from sagesql.sandbox.server import RunningServer


class Sandbox:
    """Start with ``with Sandbox("sage_accounting") as sbx:``; ``sbx.base_url`` is the API."""

    def __init__(
        self,
        product: str = "sage_accounting",
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        quiet: bool = True,
    ) -> None:
        self.site = SITES[product]
        self.config = replace(config, product=product) if config else SandboxConfig(product)
        self.app = self.site.load()(self.config)
        self.server = RunningServer(self.app, host, port, quiet=quiet)

    @property
    def url(self) -> str:
        """The server root (OAuth endpoints live under /oauth, admin under /_sandbox)."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """The API's base URL, as the URL connection property takes it."""
        return self.server.url + self.site.api_prefix

    def token(self, **kwargs: Any) -> dict[str, Any]:
        """A fresh OAuth token pair for the default sandbox client."""
        return self.app.oauth.issue(**kwargs)

    def start(self) -> Sandbox:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.app.store.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
