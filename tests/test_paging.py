"""Paging over real HTTP: each style, limits, short pages, and parallel pages in order.

Small WSGI servers play each product's list endpoint exactly as SAGE-APIS.md
describes it (Accounting ``$next`` links without /v3.1 and the last page again past
the end; Sage 200 bare arrays refusing ``$skip`` without ``$orderby``; CRM answering
fewer records than asked), count the requests, and measure how many are in flight.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import requests.auth
from werkzeug.wrappers import Request, Response

from sagesql.connector import paging
from sagesql.connector import transport as transport_module
from sagesql.connector.properties import Settings
from sagesql.connector.transport import HTTPTransport
from sagesql.errors import APIError
from sagesql.sandbox.server import RunningServer
from sagesql.schemas.catalog import default_catalog

ACCOUNTING = default_catalog().product("sage_accounting")


class ListServer:
    """A list endpoint over N records: counts requests and the most in flight at once."""

    def __init__(self, n: int, *, latency: float = 0.0, total: int | None = None) -> None:
        self.records = [{"id": i, "name": f"record {i}"} for i in range(1, n + 1)]
        self.latency = latency
        self.total = total  # what the envelope claims, when not len(records)
        self.seen: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self.server = RunningServer(self).start()

    @property
    def count(self) -> int:
        return len(self.seen)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.seen.append(dict(request.args))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            status, body = self.answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1
        return Response(json.dumps(body), status, mimetype="application/json")(
            environ, start_response
        )

    def answer(self, request: Request) -> tuple[int, Any]:
        raise NotImplementedError

    def stop(self) -> None:
        self.server.stop()


class AccountingList(ListServer):
    """``/v3.1/contacts``: page/items_per_page, $items, $total, $page, $next without /v3.1."""

    base_path = "/v3.1"

    def answer(self, request: Request) -> tuple[int, Any]:
        size = min(int(request.args.get("items_per_page", 20)), 200)
        pages = max(1, -(-len(self.records) // size))
        page = min(int(request.args.get("page", 1)), pages)  # past the end: the last page
        others = {k: v for k, v in request.args.items() if k not in ("page", "items_per_page")}
        link = None
        if page < pages:
            link = "/contacts?" + urlencode({**others, "page": page + 1, "items_per_page": size})
        return 200, {
            "$total": len(self.records) if self.total is None else self.total,
            "$page": page,
            "$next": link,
            "$back": None,
            "$itemsPerPage": size,
            "$items": self.records[(page - 1) * size : page * size],
        }


class Sage200List(ListServer):
    """``/api/customers``: bare arrays, $top/$skip needing $orderby, $count=true."""

    base_path = "/api"

    def answer(self, request: Request) -> tuple[int, Any]:
        args = request.args
        if args.get("$count") == "true":
            return 200, len(self.records)
        if "$skip" in args and "$orderby" not in args:
            return 400, [{"$dataCode": "InvalidQuery", "$message": "$skip needs $orderby"}]
        top = min(int(args.get("$top", 500)), 5000)
        skip = int(args.get("$skip", 0))
        ordered = sorted(self.records, key=lambda r: r[args.get("$orderby", "id").split()[0]])
        return 200, ordered[skip : skip + top]


class CrmList(ListServer):
    """``/sdata/crmj/sagecrm2/-/Company``: startIndex/count, at most ``most`` per answer."""

    base_path = "/sdata/crmj/sagecrm2/-"

    def __init__(self, n: int, *, most: int = 1000, **kwargs: Any) -> None:
        self.most = most
        super().__init__(n, **kwargs)

    def answer(self, request: Request) -> tuple[int, Any]:
        start = int(request.args.get("startIndex", 1))
        count = min(int(request.args.get("count", 100)), self.most)
        items = self.records[start - 1 : start - 1 + count]
        return 200, {
            "$totalResults": len(self.records),
            "$startIndex": start,
            "$itemsPerPage": len(items),
            "$resources": items,
        }


class SingleObject(ListServer):
    base_path = "/v3.1"

    def answer(self, request: Request) -> tuple[int, Any]:
        return 200, {"id": "settings", "currency": "GBP"}


@pytest.fixture
def serve():
    """serve(ServerClass, n, **kw) -> (server, transport); everything is stopped afterwards."""
    started: list[tuple[ListServer, HTTPTransport]] = []

    def start(cls: type[ListServer], n: int, *, max_concurrency: int = 4, **kwargs: Any):
        server = cls(n, **kwargs)
        config = Settings(oauth_access_token="t", rate_limit=0, max_concurrency=max_concurrency)
        transport = HTTPTransport(
            config, ACCOUNTING, base_url=server.server.url + cls.base_path, auth=None
        )
        started.append((server, transport))
        return server, transport

    yield start
    for server, transport in started:
        transport.close()
        server.stop()


def ids(pages: list[list[dict[str, Any]]]) -> list[int]:
    return [r["id"] for page in pages for r in page]


# -- page_number (Sage Accounting) -------------------------------------------------------------


def test_page_number_follows_next_links(serve) -> None:
    server, transport = serve(AccountingList, 45)
    pages = list(
        transport.pages("contacts", {"attributes": "all"}, paging.PageNumber(), page_size=20)
    )
    assert [len(p) for p in pages] == [20, 20, 5]
    assert ids(pages) == list(range(1, 46))
    # The $next links (relative, without /v3.1) were followed with the caller's parameters.
    assert [s["page"] for s in server.seen] == ["1", "2", "3"]
    assert all(s["attributes"] == "all" and s["items_per_page"] == "20" for s in server.seen)


def test_page_number_limit_stops_early_and_fits_the_page(serve) -> None:
    server, transport = serve(AccountingList, 100)
    pages = list(transport.pages("contacts", None, paging.PageNumber(), page_size=20, limit=25))
    assert ids(pages) == list(range(1, 26)) and server.count == 2
    server.seen.clear()
    pages = list(transport.pages("contacts", None, paging.PageNumber(), page_size=20, limit=5))
    assert ids(pages) == [1, 2, 3, 4, 5]
    assert server.seen == [{"page": "1", "items_per_page": "5"}]


def test_pages_are_requested_lazily(serve) -> None:
    server, transport = serve(AccountingList, 100)
    stream = transport.pages("contacts", None, paging.PageNumber(), page_size=10)
    assert server.count == 0
    next(stream)
    next(stream)
    assert server.count == 2
    stream.close()


def test_page_past_the_end_is_not_read_twice(serve) -> None:
    # The envelope claims 80 records but there are 45: page 4 would answer page 3 again.
    server, transport = serve(AccountingList, 45, total=80)
    pager = paging.PageNumber()
    pages = list(transport.pages_parallel("contacts", None, pager, page_size=20))
    assert ids(pages) == list(range(1, 46))
    assert sorted(s["page"] for s in server.seen) == ["1", "2", "3", "4"]
    past = transport.get_json("contacts", params={"page": 9, "items_per_page": 20})
    assert pager.parse(past, pager.at("contacts", None, 20, 8)).records == []


# -- top_skip (Sage 200) ------------------------------------------------------------------------


def test_top_skip_pages_until_a_short_page(serve) -> None:
    server, transport = serve(Sage200List, 45)
    pages = list(transport.pages("customers", None, paging.TopSkip("id"), page_size=20))
    assert [len(p) for p in pages] == [20, 20, 5]
    assert [(s["$top"], s["$skip"], s["$orderby"]) for s in server.seen] == [
        ("20", "0", "id"),
        ("20", "20", "id"),
        ("20", "40", "id"),
    ]


def test_top_skip_exact_multiple_ends_on_an_empty_page(serve) -> None:
    server, transport = serve(Sage200List, 40)
    pages = list(transport.pages("customers", None, paging.TopSkip(), page_size=20))
    assert ids(pages) == list(range(1, 41)) and server.count == 3


def test_top_skip_keeps_a_given_order_and_fits_the_last_page(serve) -> None:
    server, transport = serve(Sage200List, 100)
    params = {"$orderby": "name desc", "$filter": "id gt 0"}
    pages = list(transport.pages("customers", params, paging.TopSkip(), page_size=20, limit=25))
    assert sum(map(len, pages)) == 25
    assert [(s["$top"], s["$skip"]) for s in server.seen] == [("20", "0"), ("5", "20")]
    assert all(s["$orderby"] == "name desc" and s["$filter"] == "id gt 0" for s in server.seen)


def test_top_skip_total_is_a_count_request(serve) -> None:
    server, transport = serve(Sage200List, 45)
    assert transport.count("customers", {"$filter": "x", "$top": 5}, paging.TopSkip()) == 45
    assert server.seen == [{"$filter": "x", "$count": "true"}]


def test_the_server_refuses_skip_without_orderby(serve) -> None:
    # Why TopSkip always sends $orderby: the emulated API refuses $skip without it.
    _, transport = serve(Sage200List, 5)
    with pytest.raises(APIError, match=r"\$skip needs \$orderby"):
        transport.get_json("customers", params={"$top": 1, "$skip": 1})


# -- start_index (Sage CRM) ---------------------------------------------------------------------


def test_start_index_advances_by_what_came(serve) -> None:
    server, transport = serve(CrmList, 45, most=7)  # asks 20, gets 7
    pages = list(transport.pages("Company", None, paging.StartIndex(), page_size=20))
    assert ids(pages) == list(range(1, 46))
    assert [s["startIndex"] for s in server.seen] == ["1", "8", "15", "22", "29", "36", "43"]
    assert server.count == 7  # the total was reached: no request for an empty page


def test_start_index_limit(serve) -> None:
    server, transport = serve(CrmList, 45)
    pages = list(transport.pages("Company", None, paging.StartIndex(), page_size=10, limit=15))
    assert ids(pages) == list(range(1, 16))
    assert [(s["startIndex"], s["count"]) for s in server.seen] == [("1", "10"), ("11", "5")]


# -- none -------------------------------------------------------------------------------------


def test_single_object_is_one_record(serve) -> None:
    server, transport = serve(SingleObject, 0)
    pages = list(transport.pages("financial_settings", None, paging.Paginator(), page_size=20))
    assert pages == [[{"id": "settings", "currency": "GBP"}]] and server.count == 1


def test_paginator_for_table_follows_the_definition() -> None:
    catalog = default_catalog()
    assert isinstance(
        paging.for_table(catalog.table("contacts", "sage_accounting")), paging.PageNumber
    )
    pager = paging.for_table(catalog.table("customers", "sage_200"))
    assert isinstance(pager, paging.TopSkip) and pager.key == "id"
    assert isinstance(paging.for_style("start_index"), paging.StartIndex)
    assert type(paging.for_style("none")) is paging.Paginator


# -- parallel ---------------------------------------------------------------------------------


def test_parallel_pages_in_order_with_at_most_n_in_flight(serve) -> None:
    server, transport = serve(AccountingList, 200, latency=0.03, max_concurrency=4)
    pages = list(transport.pages_parallel("contacts", None, paging.PageNumber(), page_size=10))
    assert ids(pages) == list(range(1, 201))
    assert server.count == 20
    assert server.most_in_flight == 4  # parallel, and never more than MaxConcurrency


def test_parallel_buffers_at_most_n_pages_and_stops_when_abandoned(serve) -> None:
    server, transport = serve(AccountingList, 500, latency=0.01, max_concurrency=3)
    stream = transport.pages_parallel("contacts", None, paging.PageNumber(), page_size=10)
    for _ in range(4):
        next(stream)
    time.sleep(0.2)  # a slow consumer: the fetchers must wait for it
    # First page, 3 consumed parallel pages, then PAGES_AHEAD x 3 asked for (3 in flight
    # at most) and not yet taken.
    bound = 1 + 3 + transport_module.PAGES_AHEAD * 3
    assert server.count <= bound
    stream.close()
    settled = server.count
    time.sleep(0.1)
    assert server.count == settled <= bound


def test_parallel_top_skip_counts_after_three_full_pages(serve) -> None:
    server, transport = serve(Sage200List, 95, latency=0.02, max_concurrency=4)
    pages = list(transport.pages_parallel("customers", None, paging.TopSkip(), page_size=10))
    assert ids(pages) == list(range(1, 96))
    # Three pages one at a time, then the count, then the other seven pages in parallel.
    assert transport_module.COUNT_AFTER == 3
    assert all("$count" not in seen for seen in server.seen[:3])
    assert server.seen[3] == {"$count": "true"}
    assert server.count == 3 + 1 + 7
    assert 1 < server.most_in_flight <= 4


@pytest.mark.parametrize("rows, requests", [(10, 2), (15, 2), (20, 3), (25, 3)])
def test_parallel_top_skip_reads_three_pages_without_a_count(serve, rows, requests) -> None:
    server, transport = serve(Sage200List, rows, max_concurrency=4)
    pages = list(transport.pages_parallel("customers", None, paging.TopSkip(), page_size=10))
    assert ids(pages) == list(range(1, rows + 1))
    # The fewest the API allows (its lists end with a short page), no $count.
    assert server.count == requests and all("$count" not in seen for seen in server.seen)


def test_parallel_top_skip_needs_no_count_when_the_first_page_is_short(serve) -> None:
    server, transport = serve(Sage200List, 7, max_concurrency=4)
    pages = list(transport.pages_parallel("customers", None, paging.TopSkip(), page_size=10))
    assert ids(pages) == list(range(1, 8))
    assert server.count == 1 and all("$count" not in seen for seen in server.seen)


def test_parallel_top_skip_without_count_reads_one_page_at_a_time(serve) -> None:
    class NoCount(Sage200List):
        def answer(self, request: Request) -> tuple[int, Any]:
            if "$count" in request.args:
                return 400, [{"$dataCode": "InvalidQuery", "$message": "$count not supported"}]
            return super().answer(request)

    server, transport = serve(NoCount, 25, max_concurrency=4)
    pages = list(transport.pages_parallel("customers", None, paging.TopSkip(), page_size=10))
    assert ids(pages) == list(range(1, 26)) and server.most_in_flight == 1


def test_parallel_start_index_fills_short_pages(serve) -> None:
    _server, transport = serve(CrmList, 60, most=7, max_concurrency=4)
    pages = list(transport.pages_parallel("Company", None, paging.StartIndex(), page_size=10))
    assert ids(pages) == list(range(1, 61))  # in order, none missing, none twice


def test_parallel_with_a_limit_asks_only_the_pages_needed(serve) -> None:
    server, transport = serve(AccountingList, 200, max_concurrency=4)
    pages = list(
        transport.pages_parallel("contacts", None, paging.PageNumber(), page_size=10, limit=35)
    )
    assert ids(pages) == list(range(1, 36))
    assert sorted(int(s["page"]) for s in server.seen) == [1, 2, 3, 4]


def test_parallel_falls_back_to_one_at_a_time(serve) -> None:
    server, transport = serve(AccountingList, 30, max_concurrency=1)
    pages = list(transport.pages_parallel("contacts", None, paging.PageNumber(), page_size=10))
    assert ids(pages) == list(range(1, 31)) and server.most_in_flight == 1


# -- the sandbox's product emulators ------------------------------------------------------------


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def sandbox_transport(sbx: Any, product: str, **kwargs: Any) -> HTTPTransport:
    """A transport to a running sandbox with the product's credentials and headers."""
    headers: dict[str, str] = {}
    if product == "sage_crm":
        auth: requests.auth.AuthBase = requests.auth.HTTPBasicAuth("admin", "sandbox")
    else:
        auth = Bearer(sbx.token()["access_token"])
    if product == "sage_200":
        site = requests.get(sbx.base_url + "/sites", auth=auth, timeout=10).json()[0]
        headers = {"X-Site": site["site_id"], "X-Company": str(site["company_id"])}
    config = Settings(oauth_access_token="t", rate_limit=0, max_concurrency=4)
    return HTTPTransport(
        config,
        default_catalog().product(product),
        base_url=sbx.base_url,
        auth=auth,
        extra_headers=headers,
        **kwargs,
    )


@pytest.mark.parametrize(
    "product,name",
    [("sage_accounting", "contacts"), ("sage_200", "customers"), ("sage_crm", "company")],
)
def test_paging_the_sandbox_products(start_sandbox, product: str, name: str) -> None:
    from sagesql.sandbox.config import Faults

    sbx = start_sandbox(product, rows=45)
    table = default_catalog().table(name, product)
    pager = paging.for_table(table)
    path, params = table.operations["list"].path, dict(table.fixed_parameters)
    transport = sandbox_transport(sbx, product, sleep=lambda seconds: None)
    try:

        def key(record: dict[str, Any]) -> Any:
            return record.get("id") or record.get(table.key) or record.get("$key")

        one_by_one = [key(r) for p in transport.pages(path, params, pager, page_size=10) for r in p]
        assert len(one_by_one) >= 30 and len(set(one_by_one)) == len(one_by_one)
        parallel = transport.pages_parallel(path, params, pager, page_size=10)
        assert [key(r) for p in parallel for r in p] == one_by_one
        sbx.app.requests.clear()
        limited = [
            r for p in transport.pages(path, params, pager, page_size=10, limit=15) for r in p
        ]
        assert [key(r) for r in limited] == one_by_one[:15]
        assert len(sbx.app.requests) == 2
        # Dropped connections, cut bodies, 5xx and 429 from the sandbox are survived by reads.
        sbx.app.faults.reconfigure(
            Faults(drop=0.2, truncate=0.1, errors=0.1, throttle=0.05, seed=1)
        )
        sbx.app.requests.clear()
        parallel = transport.pages_parallel(path, params, pager, page_size=10)
        assert [key(r) for p in parallel for r in p] == one_by_one
        assert any(entry["fault"] for entry in sbx.app.requests)
    finally:
        transport.close()
