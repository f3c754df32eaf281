"""Logging: the ``sagesql`` loggers set up from Verbosity and Logfile, with secrets redacted.

Verbosity decides what is logged::

    1  statements and timings            sagesql at INFO, sagesql.http at WARNING (retries)
    2  + one line per request            sagesql.http at INFO: method, URL, status, ms
    3  + headers and bodies              sagesql.http at DEBUG (bodies cut to 4 KB)
    4  + urllib3's connection messages   urllib3 at DEBUG, through the same redaction
    5  everything                        as 4, bodies in full

Nothing is printed unless :func:`configure` adds a handler (``--verbose``, ``Logfile``)
or the application has handlers of its own: the retry notices at WARNING included.

Whatever the verbosity, every line that reaches a sagesql handler goes through
:class:`RedactingFilter`: the connection's secrets (``Settings.secrets()``), every
token registered with :func:`register_secret`, ``Authorization`` header values and
``access_token``/``refresh_token``/``client_secret``/``password``/``code``... fields
of JSON bodies, form bodies and query strings become ``***``. The loggers of
``oauthlib`` and ``requests_oauthlib``, which print tokens at DEBUG, are held at
WARNING; ``http.client``'s header printing (``debuglevel``, plain ``print``) is
never turned on.

The Logfile is created 0600 in folders created 0700 (:mod:`files`): from Verbosity 3 on
it holds request and answer bodies, that is, customer records, and a file created at a
lower verbosity may be written at a higher one later.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from sagesql.connector import files

if TYPE_CHECKING:
    from sagesql.connector.properties import Settings

LOGGER = "sagesql"
HTTP_LOGGER = "sagesql.http"
MASK = "***"
BODY_LIMIT = 4096  # characters of a body logged at Verbosity 3

# Loggers known to print tokens at DEBUG: never let them go below WARNING.
TOKEN_PRINTING_LOGGERS = ("oauthlib", "requests_oauthlib")
URLLIB3_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry")

# Names whose values are secrets wherever they appear as fields or parameters.
SECRET_FIELDS = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "code_verifier",
    "password",
    "passwd",
    "code",
    "token",
    "oauthclientsecret",
    "oauthaccesstoken",
    "oauthrefreshtoken",
    "proxypassword",
)
_FIELDS = "|".join(SECRET_FIELDS)
# "access_token": "x"  and  'access_token': 'x'  (JSON and Python reprs)
_QUOTED_FIELD = re.compile(
    rf"""(?i)(?<![\w$])(["'])({_FIELDS})\1(\s*:\s*)(["'])((?:\\.|(?!\4).)*)\4"""
)
# access_token=x  in form bodies, query strings and connection strings
_ASSIGNED_FIELD = re.compile(rf"""(?i)(?<![\w$])({_FIELDS})=([^&\s;"',#]*)""")
# Authorization: Bearer x  and  'Authorization': 'Basic x'
_AUTH_HEADER = re.compile(r"""(?i)((?:proxy-)?authorization)(["']?\s*[:=]\s*["']?)([^"'\r\n,}]+)""")
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@/\s]+)(@)")

# A library prints nothing unless asked: without a handler of the application's (or
# configure()'s, for --verbose and Logfile), Python's last resort would print warnings,
# such as the transport's retry notices, to stderr.
logging.getLogger(LOGGER).addHandler(logging.NullHandler())

_SHORTEST_SECRET = 3  # shorter values would mask every occurrence of a common letter
# The most recent secrets registered, oldest first: a service refreshing thousands of
# instances' tokens for weeks must not keep (nor scan, per log line) every token it
# ever saw. Access tokens live minutes, so the oldest are long dead when they drop out.
MAX_REGISTERED = 4096
_registered: dict[str, None] = {}
_registered_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None  # every registered variant, longest first


def register_secret(value: str | None) -> None:
    """Mask this value in every log line from now on (tokens obtained at run time)."""
    global _pattern
    if value and len(value) >= _SHORTEST_SECRET:
        with _registered_lock:
            if value in _registered:
                return
            _registered[value] = None
            while len(_registered) > MAX_REGISTERED:
                del _registered[next(iter(_registered))]
            _pattern = None


def registered_secrets() -> list[str]:
    """The secrets registered now (for tests, which put them back as they found them)."""
    with _registered_lock:
        return list(_registered)


def forget_secrets(keep: Iterable[str] = ()) -> None:
    """Forget every registered secret but ``keep``."""
    global _pattern
    with _registered_lock:
        _registered.clear()
        _registered.update(dict.fromkeys(keep))
        _pattern = None


def _registered_pattern() -> re.Pattern[str] | None:
    """One regular expression for every variant of every registered secret (built once per
    change, not per log line), longest first so that a secret holding another is masked
    whole."""
    global _pattern
    with _registered_lock:
        if _pattern is None and _registered:
            forms = sorted({v for s in _registered for v in _variants(s)}, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(f) for f in forms))
        return _pattern


def _variants(secret: str) -> set[str]:
    """The forms a secret takes in URLs, forms and JSON."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    return {f for f in forms if len(f) >= _SHORTEST_SECRET}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """The text with secret values, auth headers and secret fields masked."""
    given = [s for s in secrets if s and len(s) >= _SHORTEST_SECRET]
    if given:
        # Longest first, so that a secret containing another is masked whole.
        for value in sorted({v for s in given for v in _variants(s)}, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
    pattern = _registered_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _QUOTED_FIELD.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{MASK}{m[4]}", text)
    text = _ASSIGNED_FIELD.sub(lambda m: f"{m[1]}={MASK}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m[1]}{MASK}{m[3]}", text)


def redact_url(url: str) -> str:
    """A URL fit for a log: no user info password, secret query parameters masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    return redact(urlunsplit(parts._replace(netloc=netloc)))


def redact_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Headers with the values of Authorization, cookies and API keys masked."""
    hidden = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
    return {k: MASK if k.lower() in hidden else redact(str(v)) for k, v in headers.items()}


def redact_body(body: Any, limit: int | None = BODY_LIMIT) -> str:
    """A request or response body as loggable text: secret fields masked, cut to ``limit``."""
    if body is None:
        return ""
    if isinstance(body, bytes):
        text = body.decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = json.dumps(body, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(body)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return redact(text)


class PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file, when it creates it, is 0600 in folders created 0700."""

    def _open(self) -> Any:
        return files.open_private(self.baseFilename, self.mode, encoding=self.encoding or "utf-8")


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with secrets masked; drops nothing."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the line, nor leak its args
            message = str(record.msg)
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def quiet_token_loggers() -> None:
    """Hold the loggers that print tokens at DEBUG at WARNING, children included."""
    for name in TOKEN_PRINTING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            isinstance(logger, logging.Logger)
            and name.startswith(tuple(f"{p}." for p in TOKEN_PRINTING_LOGGERS))
            and logger.level != logging.NOTSET
            and logger.level < logging.WARNING
        ):
            logger.setLevel(logging.WARNING)


def _levels(verbosity: int) -> dict[str, int]:
    return {
        LOGGER: logging.INFO,
        HTTP_LOGGER: {1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG),
        "urllib3": logging.DEBUG if verbosity >= 4 else logging.WARNING,
    }


def body_limit(verbosity: int) -> int | None:
    """How much of a body to log: cut at 3 and 4, whole at 5."""
    return None if verbosity >= 5 else BODY_LIMIT


_configured: list[tuple[logging.Logger, logging.Handler]] = []
_configure_lock = threading.Lock()


def configure(settings: Settings, *, to_stderr: bool = False, stream: Any = None) -> logging.Logger:
    """Set up the ``sagesql`` loggers for these settings and return the root one.

    The log goes to ``Logfile`` when set, else to stderr when ``to_stderr`` (the CLI's
    --verbose) or to ``stream``; otherwise no handler is added and only the levels
    are set. Calling it again replaces the handlers an earlier call added.
    """
    import http.client

    verbosity = settings.verbosity
    secrets = settings.secrets()
    for secret in secrets:
        register_secret(secret)
    http.client.HTTPConnection.debuglevel = 0  # prints headers with print(): never
    quiet_token_loggers()
    with _configure_lock:
        for logger, old in _configured:
            logger.removeHandler(old)
            old.close()
        _configured.clear()
        for name, level in _levels(verbosity).items():
            logging.getLogger(name).setLevel(level)
        handler: logging.Handler | None = None
        if settings.logfile:
            handler = PrivateFileHandler(settings.logfile, encoding="utf-8", delay=True)
        elif to_stderr or stream is not None:
            handler = logging.StreamHandler(stream)
        if handler is not None:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            handler.addFilter(RedactingFilter(secrets))
            handler.setLevel(logging.DEBUG)
            attach = [LOGGER] + (["urllib3"] if verbosity >= 4 else [])
            for name in attach:
                logger = logging.getLogger(name)
                logger.addHandler(handler)
                _configured.append((logger, handler))
        # Records also reach other handlers (the root's, pytest's): redact them at the source.
        for name in (LOGGER, HTTP_LOGGER, *URLLIB3_LOGGERS):
            logger = logging.getLogger(name)
            if not any(isinstance(f, RedactingFilter) for f in logger.filters):
                logger.addFilter(RedactingFilter())
    return logging.getLogger(LOGGER)


def get_logger(name: str = LOGGER) -> logging.Logger:
    """A sagesql logger (``sagesql`` or a child such as ``sagesql.http``)."""
    return logging.getLogger(name)
