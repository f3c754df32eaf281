"""Sinks: where messages go (a webhook, a JSON lines file, standard output).

A sink sends one message (up to ten events of one table) or raises
:class:`DeliveryFailed`, saying whether trying again may help. A message may be
sent twice (the process can die after sending and before the outbox records it):
it is then the same bytes with the same ``eventId``, and receivers dedupe by it.

- webhook: POST of the platforms' notification JSON; basic auth when a user name is
  set; ``Elements-Webhook-Signature: sha256=<base64 HMAC-SHA256 of the body>`` when a
  signature key is set; extra headers. 2xx is delivered; 408, 425, 429, 5xx and
  connection failures are retried (``Retry-After`` honoured); any other 4xx will not
  change by retrying and parks the message at once. A redirect is never followed (a
  301/302 would turn the POST into a GET without the body, a 307/308 would take the
  body, signature and headers to wherever it points): a 3xx is a failed attempt whose
  error names the ``Location``, retried and then parked, so the operator can correct
  the URL. Each attempt is bounded: the whole exchange within the sink's ``timeout``
  and at most 1 MiB of answer read (connector.bounded_http); an answer past either
  bound is a failed attempt, and the message goes again with the same ``eventId``.
- jsonl: one plain event per line, appended, flushed and synced to disk; the file is
  created 0600 (folders 0700), since events carry records.
- stdout: the same lines on standard output.

For a trial run, :func:`redirect` sends one run's messages elsewhere without editing
the configuration: ``--callback-url`` (the webhooks' URL replaced) or ``--sink``
(``stdout`` or ``jsonl:PATH`` in place of every sink).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import IO, Any
from urllib.parse import urljoin

import requests

from sagesql.activities.polling.config import SinkConfig, sink
from sagesql.activities.polling.events import Origin, plain_lines, platform_body
from sagesql.connector import files
from sagesql.connector.bounded_http import (
    AnswerBroken,
    AnswerTooLarge,
    DeadlineExceeded,
    RedirectRefused,
    bounded_session,
    describe,
)
from sagesql.connector.logs import redact_url
from sagesql.errors import ConfigurationError

SIGNATURE_HEADER = "Elements-Webhook-Signature"
RETRIED_STATUSES = frozenset({408, 425, 429})
RETRY_AFTER_CAP = 3600.0  # seconds


class DeliveryFailed(Exception):
    """A message was not delivered; ``permanent`` when retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


def signature(body: bytes, key: str) -> str:
    """``sha256=<base64 HMAC-SHA256 of the body>``, as the platforms sign notifications."""
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode("ascii")


class Sink:
    """The interface: ``send`` one message, ``close`` at the end."""

    name = "sink"

    def send(self, message_id: str, table: str, events: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release by default."""


class WebhookSink(Sink):
    def __init__(self, config: SinkConfig, origin: Origin) -> None:
        self.name = config.name
        self.config = config
        self.origin = origin
        # No redirects, 1 MiB of answer, the whole attempt within the timeout.
        self.session = bounded_session(deadline=config.timeout)
        self.url = str(config.url)

    def headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **dict(self.config.headers)}
        if self.config.signature_key:
            headers[SIGNATURE_HEADER] = signature(body, self.config.signature_key)
        return headers

    def send(self, message_id: str, table: str, events: Sequence[Mapping[str, Any]]) -> None:
        body = platform_body(message_id, table, events, self.origin)
        auth = (self.config.username, self.config.password or "") if self.config.username else None
        try:
            response = self.session.post(
                self.url,
                data=body,
                headers=self.headers(body),
                auth=auth,
                timeout=self.config.timeout,
                allow_redirects=False,
            )
        except RedirectRefused as exc:
            where = redact_url(urljoin(self.url, exc.location))
            raise DeliveryFailed(
                f"the receiver answered {exc.status} redirecting to {where}: not followed "
                "(deliveries never follow redirects); if that is the receiver's address, "
                "set the sink's url to it"
            ) from None
        except DeadlineExceeded as exc:
            raise DeliveryFailed(f"the receiver sent {exc} (the sink's timeout)") from None
        except AnswerTooLarge as exc:
            raise DeliveryFailed(
                f"the receiver's answer ({exc.status}) is larger than {exc.limit} bytes: "
                "not read further"
            ) from None
        except AnswerBroken as exc:
            said = str(exc).replace("the answer", "the receiver's answer", 1)
            raise DeliveryFailed(said) from None
        except requests.RequestException as exc:
            raise DeliveryFailed(
                f"{describe(exc)}: the receiver could not be reached or gave no answer"
            ) from None
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return
        reason = f"the receiver answered {status} {_phrase(response.reason)}".strip()
        if 300 <= status < 400:
            raise DeliveryFailed(reason + " without a Location (deliveries never follow redirects)")
        if status in RETRIED_STATUSES or status >= 500:
            raise DeliveryFailed(reason, retry_after=_retry_after(response))
        raise DeliveryFailed(reason + " (not retried: a 4xx will not change)", permanent=True)

    def close(self) -> None:
        self.session.close()


def _phrase(reason: Any) -> str:
    """The status line's reason phrase, as the receiver wrote it: printable, short."""
    text = "".join(c for c in str(reason or "") if c.isprintable())
    return text[:60]


def _retry_after(response: Any) -> float | None:
    """Retry-After in seconds, at most an hour (a receiver cannot stall a lane for good)."""
    value = (response.headers.get("Retry-After") or "").strip()
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(RETRY_AFTER_CAP, max(0.0, seconds))


class LinesSink(Sink):
    """JSON lines to a stream; the file sink syncs every message to disk."""

    def __init__(self, name: str, origin: Origin, stream: IO[str], *, sync: bool) -> None:
        self.name = name
        self.origin = origin
        self.stream = stream
        self.sync = sync
        self._lock = threading.Lock()

    def send(self, message_id: str, table: str, events: Sequence[Mapping[str, Any]]) -> None:
        text = "".join(line + "\n" for line in plain_lines(message_id, events, self.origin))
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
                if self.sync:
                    os.fsync(self.stream.fileno())
            except OSError as exc:
                raise DeliveryFailed(f"cannot write: {exc.strerror}") from None


class JsonlSink(LinesSink):
    def __init__(self, config: SinkConfig, origin: Origin) -> None:
        assert config.path is not None
        try:
            stream = files.open_private(config.path, "a")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the sink {config.name!r} file {config.path}: "
                f"{exc.strerror or type(exc).__name__}",
                hint="set its path to a file you can write",
            ) from None
        super().__init__(config.name, origin, stream, sync=True)

    def close(self) -> None:
        self.stream.close()


def build(
    configs: Sequence[SinkConfig], origin: Origin, *, stdout: IO[str] | None = None
) -> dict[str, Sink]:
    """The sinks of a configuration, by name."""
    sinks: dict[str, Sink] = {}
    for config in configs:
        if config.kind == "webhook":
            sinks[config.name] = WebhookSink(config, origin)
        elif config.kind == "jsonl":
            sinks[config.name] = JsonlSink(config, origin)
        else:
            sinks[config.name] = LinesSink(config.name, origin, stdout or sys.stdout, sync=False)
    return sinks


# Trial sinks get names of their own: their lanes are not the configured sinks' lanes,
# whose pending messages wait for a run that sends them where they were meant to go.
TRIAL = "trial-"


def redirect(
    configured: Sequence[SinkConfig], *, callback_url: str | None = None, to: str | None = None
) -> tuple[tuple[SinkConfig, ...], frozenset[str]]:
    """The sinks of a trial run, and the configured ones it holds back (by name).

    ``callback_url`` replaces the URL of every webhook sink (its signature key, basic
    auth and headers kept); ``to`` (``stdout`` or ``jsonl:PATH``) replaces every sink.
    """
    if callback_url and to:
        raise ConfigurationError(
            "--callback-url and --sink both redirect the events", hint="give one of them"
        )
    if to:
        kind, _, path = to.partition(":")
        kind = kind.strip().lower()
        if kind not in ("stdout", "jsonl") or (kind == "stdout") == bool(path):
            raise ConfigurationError(
                f"--sink {to!r} is not stdout or jsonl:PATH",
                hint="write --sink stdout or --sink jsonl:events.jsonl",
            )
        entry = {"type": kind, "name": TRIAL + kind, **({"path": path} if path else {})}
        return (sink(entry, "--sink"),), frozenset(s.name for s in configured)
    if callback_url:
        webhooks = [s for s in configured if s.kind == "webhook"]
        if not webhooks:
            raise ConfigurationError(
                "--callback-url: the configuration has no webhook sink to redirect",
                hint="use --sink stdout or --sink jsonl:PATH to send the events elsewhere",
            )
        url = sink({"type": "webhook", "url": callback_url}, "--callback-url").url
        sinks = tuple(
            replace(s, name=TRIAL + s.name, url=url) if s.kind == "webhook" else s
            for s in configured
        )
        return sinks, frozenset(s.name for s in webhooks)
    return tuple(configured), frozenset()
