"""The OAuth authorization-code login: PKCE, a local listener on CallbackURL, paste fallback.

``GETANDREFRESH`` runs it when no tokens are stored, if a person is there to sign in
(a terminal on stdin or stderr): a run without one (cron, CI, an integration agent)
fails at once with the authorization URL and the ways to get a token without a browser
(:func:`connection_login`), rather than wait for a login nobody will do. ``sagesql auth
login`` runs it on request; the procedures ``GetOAuthAuthorizationURL``,
``GetOAuthAccessToken`` and ``RefreshOAuthAccessToken`` expose its steps for headless
and integration use.

The listener catches the redirect while the browser opens the authorization URL. On a
machine without a browser the URL is printed and the user pastes the redirect URL (or
just the code) back; whichever arrives first wins.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import queue
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import msgspec

from sagesql.connector import token_endpoint
from sagesql.connector.properties import Settings
from sagesql.connector.token_endpoint import AnswerLost, TokenRefused
from sagesql.errors import AuthError, ConfigurationError
from sagesql.schemas.catalog import Product

LOGIN_TIMEOUT = 300.0

Opener = Callable[[str], bool]


class Endpoints(msgspec.Struct, frozen=True):
    """The OAuth endpoints and scope of a connection (properties over product defaults)."""

    authorization_url: str
    token_url: str
    revoke_url: str | None
    scope: str
    extra: Mapping[str, str]
    pkce: bool

    @classmethod
    def of(cls, settings: Settings, product: Product) -> Endpoints:
        auth = product.auth
        if auth.get("type") != "oauth2":
            raise ConfigurationError(
                f"{product.connection_name} does not use OAuth",
                hint="connect with User and Password",
            )
        token_url = settings.oauth_token_url or auth["token_url"]
        revoke = auth.get("revoke_url")
        if settings.oauth_token_url and revoke:
            # A token URL override (sandbox, region) moves the revoke endpoint beside it.
            revoke = settings.oauth_token_url.rsplit("/", 1)[0] + "/" + revoke.rsplit("/", 1)[1]
        return cls(
            authorization_url=settings.oauth_authorization_url or auth["authorization_url"],
            token_url=token_url,
            revoke_url=revoke,
            scope=settings.scope or auth.get("default_scope") or " ".join(auth.get("scopes", [])),
            extra=dict(auth.get("extra_authorize_parameters", {})),
            pkce=bool(auth.get("pkce")),
        )


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 defines them."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorization_url(
    settings: Settings,
    endpoints: Endpoints,
    *,
    state: str,
    callback_url: str | None = None,
    scope: str | None = None,
    code_challenge: str | None = None,
) -> str:
    """The URL where the user signs in; the provider's own query (filter=apiv3.1) is kept."""
    if not settings.oauth_client_id:
        raise ConfigurationError(
            "OAuthClientId is needed to log in", hint="set OAuthClientId (and OAuthClientSecret)"
        )
    parts = urlsplit(endpoints.authorization_url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(endpoints.extra)
    query.update(
        client_id=settings.oauth_client_id,
        response_type="code",
        redirect_uri=callback_url or settings.callback_url,
        scope=scope or endpoints.scope,
        state=state,
    )
    if code_challenge:
        query.update(code_challenge=code_challenge, code_challenge_method="S256")
    return urlunsplit(parts._replace(query=urlencode(query)))


def code_from(text: str, state: str | None) -> str:
    """The code from a pasted redirect URL (state checked) or a bare code."""
    text = text.strip()
    if "://" not in text and "code=" not in text:
        if not text:
            raise AuthError("no authorization code given", hint="paste the redirect URL")
        return text
    query = parse_qs(urlsplit(text).query) if "://" in text else parse_qs(text.lstrip("?"))
    if "error" in query:
        raise AuthError(
            f"the login was refused: {query['error'][0]}",
            hint="check the client id, redirect URI and scope, then try again",
        )
    if state is not None and query.get("state", [None])[0] != state:
        raise AuthError(
            "the redirect's state does not match this login (possible CSRF)",
            hint="start the login again",
        )
    if "code" not in query:
        raise AuthError("the redirect URL has no code", hint="paste the whole redirect URL")
    return query["code"][0]


class CallbackListener:
    """A one-shot HTTP server on the callback URL's host and port that catches the redirect."""

    def __init__(self, callback_url: str) -> None:
        parts = urlsplit(callback_url)
        if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ConfigurationError(
                f"CallbackURL {callback_url} is not a local http URL the listener can serve",
                hint="use http://localhost:PORT, or EXEC GetOAuthAccessToken with AuthMode=WEB",
            )
        import http.server  # only a login listens: not on every statement's start-up path

        self.path = parts.path or "/"
        self.results: queue.Queue[str] = queue.Queue()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path.rstrip("/") != listener.path.rstrip("/"):
                    self.send_error(404)
                    return
                listener.results.put(f"http://localhost{self.path}")
                body = (
                    b"<html><body>sagesql: login complete, you can close this window.</body></html>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the query holds the code: never log it

        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        try:
            self.server = http.server.ThreadingHTTPServer((host, parts.port or 80), Handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {callback_url}: {exc.strerror or exc}",
                hint="free that port or set CallbackURL to another local port registered for "
                "your application",
            ) from None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CallbackListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def exchange_code(
    settings: Settings,
    endpoints: Endpoints,
    code: str,
    *,
    callback_url: str | None = None,
    verifier: str | None = None,
) -> dict[str, Any]:
    """Trade an authorization code for tokens (the token answer, checked)."""
    try:
        return token_endpoint.exchange(
            settings,
            endpoints.token_url,
            code,
            redirect_uri=callback_url or settings.callback_url,
            verifier=verifier,
        )
    except TokenRefused as exc:
        raise AuthError(
            exc.message,
            hint="codes are single-use and expire after a minute: log in again",
        ) from None
    except AnswerLost as exc:
        raise AnswerLost(
            exc.message,
            cause=exc.cause,
            hint="the code may have been used up: log in again ('sagesql auth login')",
        ) from None


def default_opener(url: str) -> bool:
    """Open the URL in a browser; False where there is none (a server, CI)."""
    import webbrowser

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if type(browser).__name__ in ("GenericBrowser",) and not sys.stdout.isatty():
        return False
    return bool(browser.open(url))


def _ask_on_stderr(prompt: str) -> str:
    """input(), with the prompt on stderr: stdout may be the query's rows (> out.json)."""
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def is_interactive() -> bool:
    """Whether a person can take part in a login: stdin or stderr is a terminal. Not so
    under cron, in CI or in a process an integration agent starts with pipes."""
    for stream in (sys.stdin, sys.stderr):
        try:
            if stream is not None and stream.isatty():
                return True
        except (AttributeError, OSError, ValueError):  # replaced or closed streams
            continue
    return False


def no_terminal_error(settings: Settings, endpoints: Endpoints) -> AuthError:
    """Not logged in and nobody to log in: the URL to sign in at, and what to do then."""
    # As GetOAuthAuthorizationURL makes it (no PKCE): GetOAuthAccessToken with
    # AuthMode=WEB can exchange its code in any process.
    url = authorization_url(settings, endpoints, state=secrets.token_urlsafe(16))
    profile = f" --profile {settings.profile}" if settings.profile else ""
    return AuthError(
        "not logged in, and no terminal to log in from (InitiateOAuth=GETANDREFRESH with no "
        "stored token; nothing waits for a browser here)",
        # The URL last, so that nothing sticks to it when it is copied.
        hint=f"run 'sagesql auth login{profile}' on a machine with a browser and let this one "
        "use its token store (OAuthSettingsLocation), or set InitiateOAuth=REFRESH with "
        "OAuthRefreshToken, or sign in at the URL that ends this line and pass the redirect "
        "URL to EXEC GetOAuthAccessToken @AuthMode='WEB', @Verifier='<redirect URL>' on this "
        f"connection (EXEC GetOAuthAuthorizationURL gives a new one): {url}",
    )


def connection_login(
    settings: Settings,
    endpoints: Endpoints,
    *,
    interactive: Callable[[], bool] = is_interactive,
) -> dict[str, Any]:
    """The login a connection runs when it has no token: the browser login when a person
    is at a terminal; elsewhere an AuthError at once (:func:`no_terminal_error`)."""
    if not interactive():
        raise no_terminal_error(settings, endpoints)
    return run_login(settings, endpoints)


def run_login(
    settings: Settings,
    endpoints: Endpoints,
    *,
    opener: Opener = default_opener,
    ask: Callable[[str], str] | None = None,
    timeout: float = LOGIN_TIMEOUT,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole browser login; returns the token response."""
    say = say or (lambda text: print(text, file=sys.stderr))
    state = secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair() if endpoints.pkce else (None, None)
    url = authorization_url(settings, endpoints, state=state, code_challenge=challenge)
    with CallbackListener(settings.callback_url) as listener:
        if not opener(url):
            say(f"Open this URL in a browser and sign in:\n{url}")
            if ask is not None or sys.stdin.isatty():
                reader = ask or _ask_on_stderr

                def read_paste() -> None:
                    with contextlib.suppress(EOFError, OSError):
                        listener.results.put(reader("Paste the redirect URL (or the code): "))

                threading.Thread(target=read_paste, daemon=True).start()
        try:
            answer = listener.results.get(timeout=timeout)
        except queue.Empty:
            raise AuthError(
                f"no login within {int(timeout)} s", hint="run 'sagesql auth login' again"
            ) from None
    code = code_from(answer, state)
    return exchange_code(settings, endpoints, code, verifier=verifier)
