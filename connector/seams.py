"""The seams above the connector: what the engine and the activities need of a client.

``SageClient`` (client.py) and ``HTTPTransport`` (transport.py) are the real ones; tests
and planning-only callers hand in their own objects of these shapes. Typing against
these protocols, not the classes, keeps the engine from depending on how the connector
talks HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import requests

from sagesql.connector.login import Endpoints
from sagesql.connector.paging import Paginator, Record
from sagesql.connector.products import SageProduct
from sagesql.connector.properties import Settings
from sagesql.connector.tokenstore import TokenStore
from sagesql.schemas.catalog import Catalog


class Transport(Protocol):
    """HTTP to one product's API: JSON requests and paged lists, with retries and limits."""

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response: ...

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any: ...

    def json_request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        idempotent: bool | None = None,
    ) -> Any: ...

    def count(
        self, path: str, params: Mapping[str, Any] | None, paginator: Paginator
    ) -> int | None: ...

    def records(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        paginator: Paginator,
        *,
        page_size: int,
        limit: int | None = None,
        parallel: bool = False,
        offset: int = 0,
    ) -> Iterator[Record]: ...


class Planning(Protocol):
    """Enough to plan a statement without sending anything: the catalog and the product."""

    @property
    def catalog(self) -> Catalog: ...

    @property
    def product(self) -> SageProduct: ...


class Client(Planning, Protocol):
    """An open client: settings, the transport its requests go through, and (for the
    OAuth procedures) its token store and endpoints."""

    @property
    def settings(self) -> Settings: ...

    @property
    def oauth(self) -> bool: ...

    @property
    def endpoints(self) -> Endpoints | None: ...

    @property
    def store(self) -> TokenStore | None: ...

    @property
    def interactive(self) -> Callable[[], bool]: ...  # can a person sign in in a browser

    @property
    def transport(self) -> Transport: ...
