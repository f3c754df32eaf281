"""Against a server that misbehaves on purpose, over real HTTP on loopback (tests/hostile.py).

Each failure of the reliability issue reproduced, then a fuzz of malformed, cut, endless,
slow and redirected answers fed to every reader of the transport (single GETs, each
paging style, parallel pages, counts, a POST): always a one-line error of the tree, in
bounded time and memory.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hostile import (
    Client,
    HostileServer,
    RawRequest,
    head,
    send_endless,
    send_json,
    send_redirect,
    send_silence,
    send_trickle,
)

from sagesql import errors
from sagesql.connector.client import SageClient
from sagesql.connector.paging import PageGuard, PageNumber, StartIndex, TopSkip
from sagesql.connector.properties import Settings, validate
from sagesql.connector.transport import HTTPTransport, path_with
from sagesql.engine import pipeline
from sagesql.engine.writes import WriteResult
from sagesql.errors import (
    APIError,
    DataError,
    RetriableAPIError,
)
from sagesql.schemas.catalog import default_catalog

ACCOUNTING = default_catalog().product("sage_accounting")
MiB = 2**20
TOKEN = "hostile-test-token-4f2a9c"  # registered for redaction: unlike any other text


def transport(url: str, **kwargs: Any) -> HTTPTransport:
    """A transport on the hostile server: real clocks, no waiting between retries."""
    timeout = kwargs.pop("timeout", 5)
    kwargs.setdefault("jitter", lambda: 0.0)
    return HTTPTransport(
        Settings(oauth_access_token=TOKEN, timeout=timeout, rate_limit=0),
        ACCOUNTING,
        base_url=url + "/v3.1",
        auth=None,
        **kwargs,
    )


@contextlib.contextmanager
def hostile(answer: Callable[[RawRequest, Client], Any]) -> Iterator[HostileServer]:
    server = HostileServer(answer)
    try:
        yield server
    finally:
        server.stop()


def client(server: HostileServer, **extra: str) -> SageClient:
    """A Sage Accounting connection to the hostile server."""
    props = {
        "Product": "SageAccounting",
        "URL": server.url + "/v3.1",
        "OAuthAccessToken": TOKEN,
        "BusinessId": "b1",
        "RateLimit": "0",
        "MaxConcurrency": "1",
        **extra,
    }
    return SageClient(validate(props))


def write(conn: SageClient, sql: str) -> list[dict[str, Any]]:
    result = pipeline.run(conn, sql)
    assert isinstance(result, WriteResult)
    names = [c.name for c in result.columns]
    return [dict(zip(names, row, strict=True)) for row in result]


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text, text
    return text


# -- 2. bounds: size and time ---------------------------------------------------------------


def test_an_endless_body_is_cut_at_64_mib_quickly_in_bounded_memory() -> None:
    written: list[int] = []

    def answer(request: RawRequest, client: Client) -> None:
        # A 1 GB body, as fast as the client reads it.
        written.append(send_endless(client, limit=2**30))

    with hostile(answer) as server:
        http = transport(server.url)  # the default bound: MaxResponseSize=64 (MiB)
        assert http.max_response_size == 64 * MiB
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            started = time.monotonic()
            with pytest.raises(APIError) as info:
                list(http.records("contacts", None, PageNumber(), page_size=20, limit=1))
            elapsed = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            http.close()
        assert server.requests and len(server.requests) == 1  # not retried: it would be the same
    text = one_line(info.value)
    assert "GET /contacts: the answer went on past the 64 MiB limit" in text
    assert "MaxResponseSize" in text
    assert elapsed < 5, elapsed
    assert peak < 72 * MiB, peak / MiB  # the bound, and no copy of it
    # The server's writer notices the closed socket a moment after the client gave up.
    deadline = time.monotonic() + 10
    while not written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert written and written[0] < 2**30  # the rest of the gigabyte was never read


def test_a_declared_size_past_the_bound_is_refused_before_reading() -> None:
    with hostile(lambda r, c: send_endless(c, declared=2**30)) as server:
        http = transport(server.url, max_response_size=MiB)
        started = time.monotonic()
        with pytest.raises(APIError, match=r"1024 MiB \(Content-Length\) past the 1 MiB limit"):
            http.get_json("contacts")
        assert time.monotonic() - started < 1
        http.close()


def test_max_response_size_is_a_connection_property() -> None:
    settings = validate({"OAuthAccessToken": "t", "MaxResponseSize": "2"})
    assert settings.max_response_size == 2
    with hostile(lambda r, c: send_endless(c)) as server:
        http = HTTPTransport(settings, ACCOUNTING, base_url=server.url, auth=None)
        with pytest.raises(APIError, match="past the 2 MiB limit"):
            http.get_json("x")
        http.close()
    with pytest.raises(errors.ConfigurationError, match="MaxResponseSize='0': must be at least 1"):
        validate({"OAuthAccessToken": "t", "MaxResponseSize": "0"})


def test_a_trickling_body_meets_the_deadline_of_timeout() -> None:
    # A byte every 0.2 s: every read comes well within Timeout, the whole answer never.
    with hostile(lambda r, c: send_trickle(c, every=0.2)) as server:
        http = transport(server.url, timeout=1, max_attempts=2)
        started = time.monotonic()
        with pytest.raises(RetriableAPIError) as info:
            http.get_json("contacts")
        elapsed = time.monotonic() - started
        http.close()
        assert len(server.requests) == 2
    text = one_line(info.value)
    assert "gave up after 2 attempts" in text and "no complete answer within 1 s" in text
    assert "raise Timeout" in text
    assert 2.0 <= elapsed < 3.0, elapsed


def test_trickling_headers_and_silence_meet_the_deadline_too() -> None:
    for answer in (lambda r, c: send_trickle(c, every=0.1, headers=True), send_silence_answer):
        with hostile(answer) as server:
            http = transport(server.url, deadline=0.5, max_attempts=1)
            started = time.monotonic()
            with pytest.raises(RetriableAPIError, match=r"no complete answer within 0\.5 s"):
                http.get_json("contacts")
            assert time.monotonic() - started < 1.0
            http.close()


def send_silence_answer(request: RawRequest, client: Client) -> None:
    send_silence(client)


def test_a_request_with_its_retries_ends_within_its_budget() -> None:
    with hostile(lambda r, c: send_trickle(c, every=0.1)) as server:
        # Each attempt may take 0.4 s, the request 1 s in all: the third attempt is cut short.
        http = transport(server.url, deadline=0.4, retry_budget=1.0)
        started = time.monotonic()
        with pytest.raises(RetriableAPIError):
            http.get_json("contacts")
        assert time.monotonic() - started < 1.3
        http.close()


def test_a_slow_post_is_not_sent_twice_and_its_row_is_unknown() -> None:
    def answer(request: RawRequest, client: Client) -> None:
        if request.method == "POST":
            send_trickle(client, every=0.2)

    with hostile(answer) as server, client(server, Timeout="1") as conn:
        started = time.monotonic()
        rows = write(
            conn, "INSERT INTO contacts (name, contact_types) VALUES ('A', '[\"VENDOR\"]')"
        )
        assert time.monotonic() - started < 2
        assert [r.method for r in server.requests] == ["POST"]
    assert rows[0]["status"] == "unknown" and rows[0]["key"] is None
    assert "no complete answer within 1 s after the request was sent" in rows[0]["error"]


# -- 3. redirects ---------------------------------------------------------------------------


def test_an_insert_redirected_is_failed_naming_the_location() -> None:
    made_up = {"id": "made-up", "name": "A", "displayed_as": "A"}

    def answer(request: RawRequest, client: Client) -> None:
        name = (request.json() or {}).get("contact", {}).get("name")
        if request.method == "GET":
            send_json(client, made_up)  # what following the redirect as a GET would see
        elif name == "http":  # the common case: an http URL sent on to https
            send_redirect(client, 301, f"https://127.0.0.1:{server.port}/v3.1/contacts")
        elif name == "same":
            send_redirect(client, 302, "/v3.1/contacts/made-up")
        else:
            send_redirect(client, 307, "https://elsewhere.example/contacts")

    with hostile(answer) as server, client(server) as conn:
        rows = write(
            conn,
            "INSERT INTO contacts (name, contact_types) VALUES ('http', '[\"VENDOR\"]'), "
            "('same', '[\"VENDOR\"]'), ('other', '[\"VENDOR\"]')",
        )
        assert [r.method for r in server.requests] == ["POST"] * 3  # nothing followed
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert [r["key"] for r in rows] == [None] * 3
    first, second, third = (r["error"] for r in rows)
    assert (
        f"POST /contacts: the API answered 301 Moved to https://127.0.0.1:{server.port}/v3.1/contacts"
        in first
    )
    assert f"set URL to https://127.0.0.1:{server.port}/v3.1" in first
    assert f"answered 302 Moved to http://127.0.0.1:{server.port}/v3.1/contacts/made-up" in second
    assert "https://elsewhere.example/contacts" in third and "check the URL connection" in third


def test_reads_do_not_follow_redirects_nor_send_the_token_elsewhere() -> None:
    with hostile(lambda r, c: send_json(c, {"$items": []})) as elsewhere:

        def answer(request: RawRequest, client: Client) -> None:
            # Another host (localhost is not 127.0.0.1), where the token must not go.
            send_redirect(client, 302, f"http://localhost:{elsewhere.port}/v3.1/contacts?page=1")

        with hostile(answer) as server, client(server) as conn:
            with pytest.raises(APIError) as info:
                list(pipeline.run(conn, "SELECT id FROM contacts"))
            assert len(server.requests) == 1
        assert elsewhere.requests == []  # the token never left
    text = one_line(info.value)
    moved = f"http://localhost:{elsewhere.port}/v3.1"
    assert f"GET /contacts: the API answered 302 Moved to {moved}/contacts?page=1" in text
    assert f"check the URL connection property: if {moved} is Sage's API, set URL to it" in text
    assert info.value.status == 302 and info.value.location.startswith(moved)


def test_a_token_refresh_is_not_redirected_with_its_secrets() -> None:
    stolen = {"access_token": "stolen-token-x1", "token_type": "bearer", "expires_in": 3600}
    with hostile(lambda r, c: send_json(c, stolen)) as elsewhere:

        def answer(request: RawRequest, client: Client) -> None:
            if request.path == "/oauth/token":  # a 307 keeps the POST and its form body
                send_redirect(client, 307, f"http://localhost:{elsewhere.port}/oauth/token")
            else:
                send_json(client, [{"$dataCode": "AuthorizationFailure"}], 401)

        refresh = {
            "InitiateOAuth": "REFRESH",
            "OAuthRefreshToken": "refresh-token-secret-1",
            "OAuthClientId": "client-1",
            "OAuthClientSecret": "client-secret-2",
            "OAuthSettingsLocation": "memory://hostile-refresh",
        }
        with hostile(answer) as server:
            refresh["OAuthTokenURL"] = server.url + "/oauth/token"
            with client(server, **refresh) as conn, pytest.raises(errors.APIError) as info:
                list(pipeline.run(conn, "SELECT id FROM contacts"))
            assert [r.path for r in server.requests] == ["/v3.1/contacts", "/oauth/token"]
        assert elsewhere.requests == []
    assert "never follows a token endpoint's redirect" in one_line(info.value)
    assert "client-secret-2" not in one_line(info.value)


# -- 4. endless paging ---------------------------------------------------------------------


def endless_pages(*, same: bool, total: int | None = None) -> Callable[[RawRequest, Client], None]:
    """Accounting-style pages that always link to one more: the same records, or new ones."""

    def answer(request: RawRequest, client: Client) -> None:
        page = int(request.args.get("page", 1))
        size = int(request.args.get("items_per_page", 20))
        first = 0 if same else (page - 1) * size
        body: dict[str, Any] = {
            "$items": [{"id": str(first + i), "name": f"n{first + i}"} for i in range(size)],
            "$page": page,
            "$next": f"/contacts?page={page + 1}&items_per_page={size}",
        }
        if total is not None:
            body["$total"] = total
        send_json(client, body)

    return answer


def test_pages_repeating_the_same_records_stop_with_an_error() -> None:
    with hostile(endless_pages(same=True)) as server, client(server, Pagesize="20") as conn:
        with pytest.raises(APIError) as info:
            list(pipeline.run(conn, "SELECT id FROM contacts"))
        assert len(server.requests) == 2
    text = one_line(info.value)
    assert "GET /contacts: page 2 holds the same 20 records as page 1" in text
    assert "paging without end" in text


def test_more_records_than_the_total_stop_with_an_error() -> None:
    with hostile(endless_pages(same=False, total=50)) as server:
        http = transport(server.url)
        with pytest.raises(APIError, match="more records than the 50 the API said it has"):
            list(http.records("contacts", None, PageNumber(), page_size=20))
        # 50 + a margin of 5 pages (100): over it on the 8th page.
        assert len(server.requests) == 8
        # In parallel, the pages the total asks for are all that is read.
        server.requests.clear()
        records = list(http.records("contacts", None, PageNumber(), page_size=20, parallel=True))
        assert len(records) == 60 and len(server.requests) == 3
        http.close()


def test_a_list_without_total_stops_at_the_page_cap() -> None:
    def answer(request: RawRequest, client: Client) -> None:  # Sage 200: full pages forever
        skip, top = int(request.args["$skip"]), int(request.args["$top"])
        send_json(client, [{"id": skip + i} for i in range(top)])

    with hostile(answer) as server:
        http = transport(server.url, max_pages=30)
        with pytest.raises(APIError, match=r"more than 30 pages; stopped after 31 pages"):
            list(http.records("customers", None, TopSkip("id"), page_size=10))
        assert len(server.requests) == 31
        http.close()


def test_the_page_guard_allows_what_real_paging_does() -> None:
    from sagesql.connector.paging import Page, PageRequest

    guard = PageGuard("/contacts", page_size=2, max_pages=10)
    request = PageRequest("/contacts", {})
    guard.check(Page(request, [{"id": 1}, {"id": 2}], total=3))
    guard.check(Page(request, [{"id": 2}, {"id": 3}], total=4))  # shifted: not the same page
    guard.check(Page(request, [], total=4))
    guard.check(Page(request, [], total=4))  # empty pages repeat harmlessly
    with pytest.raises(APIError, match="page 5 holds the same 2 records as page 1"):
        guard.check(Page(request, [{"id": 1}, {"id": 2}]))


# -- 5. values in paths --------------------------------------------------------------------


def recorder(request: RawRequest, client: Client) -> None:
    if request.method == "GET" and request.path == "/v3.1/contacts":
        # A list answering keys that would move a request: each must stay where it is.
        items = [{"id": k, "name": "x"} for k in ("..", ".", "a/b", "ok 1")]
        send_json(client, {"$items": items, "$total": 4, "$page": 1, "$next": None})
    elif request.method == "GET":
        send_json(client, {"id": "k", "name": "x"})
    else:
        send_json(client, {"contact": {"id": "k"}} if request.method == "PUT" else {}, 200)


@pytest.mark.parametrize("key", ["..", ".", "", "a/b", "a\\b", "%2e%2E", "%2F", "x\n"])
def test_a_key_that_would_move_the_request_is_refused_before_sending(key: str) -> None:
    with hostile(recorder) as server, client(server) as conn:
        rows = write(conn, f"DELETE FROM contacts WHERE id = '{key}'")
        assert rows[0]["status"] == "failed" and "nothing was sent" in rows[0]["error"]
        with pytest.raises(DataError, match=r"cannot be the \{key\} of /contacts/\{key\}"):
            list(pipeline.run(conn, f"SELECT name FROM contacts WHERE id = '{key}'"))
        with pytest.raises(DataError, match=r"cannot be the \{Id\}"):
            pipeline.run(conn, f"EXEC ReleaseSalesInvoice @Id = '{key}'")
        assert server.requests == []


def test_keys_from_the_api_cannot_move_a_write_and_safe_keys_stay_one_segment() -> None:
    with hostile(recorder) as server, client(server) as conn:
        rows = write(conn, "DELETE FROM contacts WHERE name = 'x'")
        sent = [(r.method, r.target) for r in server.requests if r.method != "GET"]
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "deleted"]
    assert sent == [("DELETE", "/v3.1/contacts/ok%201")]
    assert (
        path_with("/Company('{key}')", {"key": "1') or ('1"})
        == "/Company('1%27%29%20or%20%28%271')"
    )
    assert path_with("/x/{Id}/release", {"Id": "a?b#c"}) == "/x/a%3Fb%23c/release"


# -- 9. messages ---------------------------------------------------------------------------


def test_a_404_blames_a_record_only_when_one_was_asked_for() -> None:
    def answer(request: RawRequest, client: Client) -> None:
        send_json(client, [{"$dataCode": "RecordNotFound", "$message": "Not found"}], 404)

    with hostile(answer) as server:
        http = transport(server.url)
        with pytest.raises(APIError) as listing:
            list(http.records("contacts", None, PageNumber(), page_size=20))
        with pytest.raises(APIError) as record:
            http.json_request("DELETE", path_with("/contacts/{key}", {"key": "c1"}))
        with pytest.raises(APIError) as create:
            http.json_request("POST", "/contacts", json={})
        http.close()
    assert "deleted" not in str(listing.value) and "deleted" not in str(create.value)
    assert "URL connection property" in str(listing.value)
    assert "DELETE /contacts/c1: Not found (404 RecordNotFound)" in str(record.value)
    assert "the record may have been deleted" in str(record.value)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_fails_fast_naming_the_url() -> None:
    port = free_port()
    conn = SageClient(
        validate(
            {
                "URL": f"http://127.0.0.1:{port}/v3.1",
                "OAuthAccessToken": TOKEN,
                "BusinessId": "b1",
            }
        )
    )
    started = time.monotonic()
    with conn, pytest.raises(RetriableAPIError) as info:
        list(pipeline.run(conn, "SELECT id FROM contacts"))
    elapsed = time.monotonic() - started
    text = one_line(info.value)
    assert elapsed < 2.0, elapsed
    assert "GET /contacts: gave up after" in text
    assert f"connection refused at 127.0.0.1:{port}" in text
    assert f"the API is unreachable at http://127.0.0.1:{port}: check the URL connection" in text
    # Not blamed on a rate limit (the port itself may hold the digits 429).
    assert "429" not in text.replace(str(port), "") and "RateLimit" not in text


BIN = Path(sys.executable).parent


def test_retry_notices_reach_stderr_only_with_verbose(tmp_path: Path) -> None:
    def answer(request: RawRequest, client: Client) -> None:
        if len(server.requests) == 1:
            client.send(head(503, "Busy", Content_Length="0"))
        else:
            send_json(client, {"$items": [{"id": "c1"}], "$total": 1})

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    env.update(SAGESQL_CONFIG_DIR=str(tmp_path / "c"), SAGESQL_DATA_DIR=str(tmp_path / "d"))
    outputs = []
    for verbose in ([], ["-v"]):
        with hostile(answer) as server:
            connection = f"URL={server.url}/v3.1;OAuthAccessToken={TOKEN};BusinessId=b1;RateLimit=0"
            done = subprocess.run(
                [
                    str(BIN / "sagesql"),
                    "query",
                    "-c",
                    connection,
                    *verbose,
                    "-f",
                    "jsonl",
                    "SELECT id FROM contacts",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"id": "c1"}
        outputs.append(done.stderr)
    quiet, verbose_err = outputs
    assert quiet == ""
    assert "503 Busy; retry 1 of 5" in verbose_err


# -- fuzz: every reader against every misbehaviour ------------------------------------------


def _raw(data: bytes) -> Callable[[RawRequest, Client], None]:
    return lambda r, c: c.send(data)


def _chunked(*chunks: bytes) -> bytes:
    return head(200, Content_Type="application/json", Transfer_Encoding="chunked") + b"".join(
        chunks
    )


def _json_text(text: str | bytes, status: int = 200, **headers: str) -> Callable[..., None]:
    body = text.encode() if isinstance(text, str) else text
    headers.setdefault("Content_Type", "application/json")
    return _raw(head(status, Content_Length=str(len(body)), **headers) + body)


MISBEHAVIOURS: dict[str, Callable[[RawRequest, Client], None]] = {
    "garbage JSON": _json_text("{not json"),
    "HTML page": _json_text("<html>Sign in</html>", Content_Type="text/html"),
    "empty 200": _json_text(""),
    "JSON string": _json_text('"hello"'),
    "JSON null": _json_text("null"),
    "wrong envelope": _json_text('{"$items": "x", "$total": "many", "$next": 5, "value": 3}'),
    "records not objects": _json_text('{"$items": [1, "a", null, []], "$resources": [2]}'),
    "nested 100000 deep": _json_text("[" * 100_000 + "]" * 100_000),
    "huge integer": _json_text("1" * 50_000),
    "error body nested deep": _json_text("[" * 100_000, 422),
    "cut at declared length": _raw(head(200, Content_Length="1000") + b'[{"id": 1}'),
    "cut chunk": _raw(_chunked(b'a\r\n[{"id": 1')),
    "bad chunk size": _raw(_chunked(b"zz\r\nabc\r\n")),
    "garbage status line": _raw(b"HELLO THERE\r\n\r\n{}"),
    "not HTTP at all": _raw(bytes(random.Random(7).randrange(256) for _ in range(3000))),
    "nothing, closed": _raw(b""),
    "bad Content-Length": _raw(head(200, Content_Length="abc") + b"{}"),
    "negative Content-Length": _raw(head(200, Content_Length="-5") + b"{}"),
    "not gzip": _raw(head(200, Content_Encoding="gzip", Content_Length="4") + b"{}{}"),
    "too many headers": _raw(
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n{}"
    ),
    "header line of 100 KB": _raw(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 100_000 + b"\r\n\r\n{}"),
    "100 Continue then nothing": _raw(b"HTTP/1.1 100 Continue\r\n\r\n"),
    "429 for a day": _raw(head(429, Retry_After="86400", Content_Length="0")),
    "301 to https": lambda r, c: send_redirect(c, 301, "https://127.0.0.1:1" + r.target),
    "302 relative": lambda r, c: send_redirect(c, 302, "/elsewhere"),
    "303 other host": lambda r, c: send_redirect(c, 303, "http://evil.example/steal"),
    "307 without Location": lambda r, c: send_redirect(c, 307, None),
    "308 to javascript": lambda r, c: send_redirect(c, 308, "javascript:alert(1)"),
    "300 multiple": lambda r, c: send_redirect(c, 300, "/a"),
}
# Answers that would fill memory if read whole.
HUGE: dict[str, Callable[[RawRequest, Client], None]] = {
    "gzip bomb": _raw(
        head(200, Content_Encoding="gzip", Content_Type="application/json")
        + gzip.compress(b" " * (8 * MiB))
    ),
    "endless chunked": lambda r, c: send_endless(c),
    "endless declared": lambda r, c: send_endless(c, declared=2**40),
    "endless 503": lambda r, c: send_endless(c, status=503),
    "endless 401": lambda r, c: send_endless(c, status=401),
    "endless 404": lambda r, c: send_endless(c, status=404),
}
SLOW_MISBEHAVIOURS: dict[str, Callable[[RawRequest, Client], None]] = {
    "trickled body": lambda r, c: send_trickle(c, every=0.05),
    "trickled headers": lambda r, c: send_trickle(c, every=0.05, headers=True),
    "silence": send_silence_answer,
}

READERS: dict[str, Callable[[HTTPTransport], Any]] = {
    "GET": lambda t: t.get_json("contacts"),
    "GET one record": lambda t: t.get_json(path_with("/contacts/{key}", {"key": "c1"})),
    "page_number": lambda t: list(t.records("contacts", None, PageNumber(), page_size=20)),
    "page_number parallel": lambda t: list(
        t.records("contacts", None, PageNumber(), page_size=20, parallel=True)
    ),
    "top_skip": lambda t: list(t.records("customers", None, TopSkip("id"), page_size=20)),
    "top_skip parallel (count)": lambda t: list(
        t.records("customers", None, TopSkip("id"), page_size=20, parallel=True)
    ),
    "start_index parallel": lambda t: list(
        t.records("Company", None, StartIndex(), page_size=20, parallel=True)
    ),
    "count": lambda t: t.count("customers", None, TopSkip("id")),
    "POST": lambda t: t.json_request("POST", "contacts", json={"contact": {"name": "A"}}),
}


def fuzz(
    cases: dict[str, Callable[[RawRequest, Client], None]], bound: float, *, memory: bool = True
) -> None:
    """Every reader against every case: a result or a one-line error of the tree, within
    ``bound`` seconds each, and memory within a few times the 1 MiB answer bound. The
    readers of a case run at once, each in its own thread (as parallel pages do)."""
    failures: list[str] = []

    def attempt(case: str, url: str, name: str, read: Callable[[HTTPTransport], Any]) -> None:
        http = transport(url, deadline=0.3, retry_budget=1.0, max_response_size=MiB)
        started = time.monotonic()
        try:
            read(http)
        except errors.Error as exc:
            if "\n" in str(exc) or "\r" in str(exc):
                failures.append(f"{case} / {name}: not one line: {exc!r}")
        except Exception as exc:  # anything else escaped the tree
            failures.append(f"{case} / {name}: {type(exc).__name__}: {exc!r:.300}")
        finally:
            http.close()
        elapsed = time.monotonic() - started
        if elapsed > bound:
            failures.append(f"{case} / {name}: took {elapsed:.1f} s")

    if memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
    try:
        with ThreadPoolExecutor(len(READERS)) as pool:
            for case, answer in cases.items():
                with hostile(answer) as server:
                    for future in [
                        pool.submit(attempt, case, server.url, name, read)
                        for name, read in READERS.items()
                    ]:
                        future.result()
        peak = tracemalloc.get_traced_memory()[1] if memory else 0
    finally:
        if memory:
            tracemalloc.stop()
    assert not failures, "\n".join(failures)
    assert peak < 16 * MiB, peak / MiB


def test_fuzz_every_reader_against_bad_answers() -> None:
    fuzz(MISBEHAVIOURS, bound=1.5, memory=False)


def test_fuzz_every_reader_against_huge_answers_in_bounded_memory() -> None:
    fuzz(HUGE, bound=1.5)


@pytest.mark.slow
def test_fuzz_every_reader_against_slow_answers() -> None:
    fuzz(SLOW_MISBEHAVIOURS, bound=1.5)


def test_fuzz_random_answers() -> None:
    """Answers assembled at random from status lines, headers and bodies, good and bad."""
    pick = random.Random(2024)
    statuses = [
        b"200 OK",
        b"201 Created",
        b"204 No Content",
        b"301 Moved",
        b"404 NF",
        b"422 X",
        b"500 E",
        b"999 Odd",
        b"abc",
        b"",
    ]
    headers = [
        b"Content-Type: application/json",
        b"Content-Length: 5",
        b"Content-Length: 0",
        b"Content-Length: 99999",
        b"Transfer-Encoding: chunked",
        b"Location: /x",
        b"Content-Encoding: gzip",
        b"Retry-After: soon",
        b"X: \xff\xfe",
        b": empty",
    ]
    bodies = [
        b'{"$items": [{"id": 1}], "$next": "/x?page=2"}',
        b"[{}]",
        b"{",
        b"\x00" * 50,
        b"5\r\n[1,2]\r\n0\r\n\r\n",
        b"null",
        b'{"$resources": null}',
        b"3\r\nab",
    ]
    cases = {}
    for n in range(30):
        data = (
            b"HTTP/1.1 "
            + pick.choice(statuses)
            + b"\r\n"
            + b"".join(h + b"\r\n" for h in pick.sample(headers, pick.randrange(4)))
            + b"\r\n"
            + pick.choice(bodies)
        )
        cases[f"random {n}: {data[:60]!r}"] = _raw(data)
    fuzz(cases, bound=1.5, memory=False)  # small bodies only: memory is the other tests'
