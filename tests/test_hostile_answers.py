"""Fuzz: malformed, truncated, endless, trickling and redirected answers fed to the two
readers of answers from servers that are not Sage's API (the token endpoint and webhook
receivers), over real loopback HTTP. Each answer ends in a clean outcome (a token or a
one-line sagesql error; delivered or a one-line DeliveryFailed) that names no secret,
within the deadline, holding little memory: a catalogue of known misbehaviours, then
answers hypothesis makes up."""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hostile_http import (
    Behaviour,
    HostileServer,
    Recorder,
    answer,
    cut,
    drop,
    endless,
    endless_chunked,
    hang,
    json_answer,
    raw,
    redirect,
    trickling_body,
    trickling_headers,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagesql.activities.polling.config import SinkConfig
from sagesql.activities.polling.events import Origin
from sagesql.activities.polling.sinks import DeliveryFailed, WebhookSink
from sagesql.connector import token_endpoint
from sagesql.connector.properties import validate
from sagesql.errors import Error, OperationalError

DEADLINE = 1.0  # the connection's Timeout and the sink's timeout, in seconds
TIME_BOUND = DEADLINE + 1.5  # what one call may take, the test's own overhead included
MEMORY_BOUND = 8 * 1024 * 1024  # peak bytes allocated during one call (answers: 1 MiB)
REFRESH_TOKEN = "rt-0xSECRET-refresh"
CLIENT_SECRET = "cs-0xSECRET-client"
SIGNATURE_KEY = "sk-0xSECRET-signature"
SECRETS = (REFRESH_TOKEN, CLIENT_SECRET, SIGNATURE_KEY, "pw-0xSECRET")

ELSEWHERE = "http://127.0.0.1:9/elsewhere"  # replaced by a recorder's URL per test


def _bomb() -> bytes:
    return gzip.compress(b"\0" * (64 * 1024 * 1024), 9)


CATALOGUE: dict[str, Callable[[], Behaviour]] = {
    "endless": lambda: endless(),
    "endless chunked": lambda: endless_chunked(),
    "endless error page": lambda: endless(500, "text/html"),
    "gzip bomb": lambda: answer(
        200, _bomb(), {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    ),
    "trickling body": lambda: trickling_body(),
    "trickling headers": lambda: trickling_headers(),
    "hang": lambda: hang,
    "drop": lambda: drop,
    "cut token": lambda: cut(200, json.dumps({"access_token": "a" * 40}).encode()),
    "cut error": lambda: cut(400, b'{"error": "invalid_grant"}'),
    "301": lambda: redirect(301, ELSEWHERE),
    "302": lambda: redirect(302, ELSEWHERE),
    "307": lambda: redirect(307, ELSEWHERE),
    "308": lambda: redirect(308, ELSEWHERE),
    "not http": lambda: raw(b"SSH-2.0-OpenSSH_9.6\r\n"),
    "empty": lambda: raw(b""),
    "bad length": lambda: raw(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}"),
    "negative length": lambda: raw(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n{}"),
    "status 999": lambda: raw(b"HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\n{}"),
    "long header line": lambda: raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"),
    "1000 headers": lambda: raw(b"HTTP/1.1 200 OK\r\n" + b"X-H: 1\r\n" * 1000 + b"\r\n"),
    "html 200": lambda: answer(200, b"<html>sign in</html>", {"Content-Type": "text/html"}),
    "html 502": lambda: answer(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}),
    "json list": lambda: json_answer(200, [1, 2]),
    "token of a number": lambda: json_answer(200, {"access_token": 123}),
    "token with a newline": lambda: json_answer(200, {"access_token": "a\r\nX-Evil: 1"}),
    "bad expiry": lambda: json_answer(200, {"access_token": "ok", "expires_in": "soon"}),
    "infinite expiry": lambda: answer(200, b'{"access_token": "ok", "expires_in": 1e999}'),
    "refresh token a dict": lambda: json_answer(200, {"access_token": "ok", "refresh_token": {}}),
    "error a dict": lambda: json_answer(400, {"error": {"code": 1}}),
    "echoed secrets": lambda: json_answer(
        400, {"error": "invalid_grant", "error_description": f"{REFRESH_TOKEN} {CLIENT_SECRET}"}
    ),
    "deep json": lambda: answer(200, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "not utf-8": lambda: answer(200, b'{"access_token": "\xff\xfe"}'),
}


# Complete 2xx answers: a webhook receiver that sent one took the message (its body is
# not read for meaning); the token endpoint's reader refuses every one as no token.
WEBHOOK_DELIVERS = {
    "bad length",
    "negative length",
    "html 200",
    "json list",
    "token of a number",
    "token with a newline",
    "bad expiry",
    "infinite expiry",
    "refresh token a dict",
    "deep json",
    "not utf-8",
}


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder


def token_settings() -> Any:
    return validate(
        {
            "Product": "SageAccounting",
            "InitiateOAuth": "REFRESH",
            "OAuthRefreshToken": REFRESH_TOKEN,
            "OAuthClientId": "client-1",
            "OAuthClientSecret": CLIENT_SECRET,
            "Timeout": str(int(DEADLINE)),
        }
    )


def read_token(url: str) -> Any:
    """The token reader: the refresh grant's answer, or a sagesql error."""
    return token_endpoint.refresh(token_settings(), url + "/oauth/token", REFRESH_TOKEN)


def read_webhook(url: str) -> Any:
    """The webhook answer reader: delivered (None), or DeliveryFailed."""
    sink = WebhookSink(
        SinkConfig(
            kind="webhook",
            name="hook",
            url=url + "/hook",
            username="u",
            password="pw-0xSECRET",
            signature_key=SIGNATURE_KEY,
            timeout=DEADLINE,
        ),
        Origin("i", "n", "sage200"),
    )
    try:
        return sink.send("m-1", "customers", [])
    finally:
        sink.close()


READERS = {"token endpoint": read_token, "webhook": read_webhook}


def outcome(reader: Callable[[str], Any], url: str, *, measure: bool) -> tuple[Any, float, int]:
    """(what the reader returned or raised, seconds, peak bytes): anything else it raises
    fails the test."""
    if measure:
        tracemalloc.start()
    started = time.monotonic()
    try:
        result: Any = reader(url)
    except (Error, DeliveryFailed) as exc:
        result = exc
    finally:
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] if measure else 0
        if measure:
            tracemalloc.stop()
    return result, took, peak


def assert_clean(result: Any) -> None:
    # A token endpoint's misbehaviour is a failure talking to Sage, never the caller's.
    assert not isinstance(result, Error) or isinstance(result, OperationalError), repr(result)
    if isinstance(result, (Error, DeliveryFailed)):
        text = str(result)
        assert text and "\n" not in text and "\r" not in text, repr(text)
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {text!r}"
        assert "internal error" not in text
    else:
        assert result is None or (isinstance(result, dict) and result.get("access_token"))


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", CATALOGUE)
def test_every_known_misbehaviour_ends_cleanly_in_time_and_memory(
    case: str, reader: str, elsewhere: Recorder
) -> None:
    global ELSEWHERE
    ELSEWHERE = elsewhere.url + "/elsewhere"
    with HostileServer(CATALOGUE[case]()) as server:
        result, took, peak = outcome(READERS[reader], server.url, measure=True)
    if reader == "webhook" and case in WEBHOOK_DELIVERS:
        assert result is None, f"{case}: {result}"
    else:
        assert isinstance(result, (Error, DeliveryFailed)), f"{case}: {result!r} accepted"
    assert_clean(result)
    assert took < TIME_BOUND, f"{case}: {took:.2f} s"
    assert peak < MEMORY_BOUND, f"{case}: {peak} bytes"
    assert elsewhere.seen == [], f"{case}: a redirect was followed"
    if case[0] == "3":
        assert "redirecting to " + ELSEWHERE in str(result)


# -- made-up answers ------------------------------------------------------------------------

HEADER_NAMES = [
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    "Content-Encoding",
    "Location",
    "Retry-After",
    "Connection",
    "X-Other",
]
HEADER_VALUES = [
    "application/json",
    "text/html",
    "chunked",
    "gzip",
    "deflate",
    "0",
    "-1",
    "5",
    "99999999999999999999",
    "abc",
    "close",
    "http://127.0.0.1:9/x",
    "//evil.example/x",
    "1e309",
    "nan",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
token_like = st.fixed_dictionaries(
    {},
    optional={
        "access_token": json_values | st.text(min_size=1, max_size=30),
        "refresh_token": json_values,
        "expires_in": json_values,
        "token_type": json_values,
        "scope": json_values,
        "error": json_values | st.sampled_from(["invalid_grant", "invalid_client"]),
        "error_description": json_values,
    },
).map(lambda d: json.dumps(d).encode())
bodies = st.one_of(token_like, st.binary(max_size=300), st.just(b""))


@st.composite
def answers(draw: Any) -> bytes:
    status = draw(st.one_of(st.integers(100, 599), st.integers(0, 1200)))
    reason = draw(st.sampled_from([b"OK", b"", b"X" * 300, b"\xff\xfe", b"Moved"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"ICY", b""]))
    headers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(HEADER_NAMES),
                st.one_of(st.sampled_from(HEADER_VALUES), st.text(max_size=20)),
            ),
            max_size=5,
        )
    )
    body = draw(bodies)
    cut_at = draw(st.none() | st.integers(0, 400))
    head = version + b" " + str(status).encode() + b" " + reason + b"\r\n"
    for name, value in headers:
        head += name.encode() + b": " + value.encode("utf-8", "replace") + b"\r\n"
    data = head + b"\r\n" + body
    return data if cut_at is None else data[:cut_at]


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[HostileServer]:
    with HostileServer(raw(b"")) as server:
        yield server


@pytest.mark.parametrize("reader", READERS)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=answers())
def test_made_up_answers_end_cleanly(fuzz_server: HostileServer, reader: str, data: bytes) -> None:
    fuzz_server.behaviour = raw(data)
    result, took, _ = outcome(READERS[reader], fuzz_server.url, measure=False)
    assert_clean(result)
    assert took < TIME_BOUND
