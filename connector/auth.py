"""Authentication objects for requests: OAuth 2.0 bearer tokens (with refresh) and basic auth.

:class:`OAuthAuth` implements the three ``InitiateOAuth`` modes:

- ``OFF``: the given ``OAuthAccessToken`` is used as it is; a 401 is an AuthError
  that says the token expired and how to get a new one;
- ``REFRESH``: start from the given access and refresh tokens (or the newer pair
  stored from them), refresh before expiry and on 401, store every new pair;
- ``GETANDREFRESH``: use the stored tokens, else exchange ``OAuthCode`` (an
  authorization code obtained elsewhere: an integration platform's
  ``providerData.code``; once, the pair stored with the code's fingerprint), else log
  in (authorization code flow, see login.py), then refresh as above.

Refresh is single-flight across threads and processes: under the store's lock the
store is re-read, and the refresh grant is made only if the stored token is still
the stale one. The grant itself is :mod:`token_endpoint`'s (bounded, read strictly).

A lost refresh answer is the one failure no client can undo. Sage rotates refresh
tokens: the answer carrying the new one also retires the old one. If that answer is
cut off after Sage has sent it (a dropped connection, a timeout), the new refresh token
is gone and the old one is dead, for every process that shares the token store; only a
new login (``sagesql auth login``) gives a working pair again. Some servers accept the
previous refresh token for a grace period after a rotation; Sage documents none, so
sagesql does not count on one: when an answer is lost it asks once more with the same
refresh token (which works if the grant never took effect, or if Sage does keep an
undocumented grace period), and otherwise fails with the login to run. The lost answer
is recorded in the store (``refresh_lost``), so that every process that then finds the
refresh token refused says why, and which command brings it back.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from sagesql.connector import logs, token_endpoint
from sagesql.connector.properties import Settings
from sagesql.connector.token_endpoint import AnswerLost, TokenRefused
from sagesql.connector.tokenstore import TokenSet, TokenStore
from sagesql.errors import AuthError, RetriableAPIError

# These loggers print tokens and request bodies at DEBUG: never let them.
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(logging.WARNING)

log = logging.getLogger("sagesql.auth")

# Refresh this long before expiry (a quarter of the lifetime for short-lived tokens).
REFRESH_MARGIN = 60.0

Login = Callable[[], dict[str, Any]]


def fingerprint(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None


def login_command(settings: Settings) -> str:
    """The command that signs this connection in again."""
    profile = f" --profile {settings.profile}" if settings.profile else ""
    return f"sagesql auth login{profile}"


def _relogin_hint(settings: Settings) -> str:
    if settings.initiate_oauth == "REFRESH":
        return (
            "give a new OAuthRefreshToken, or log in with "
            f"'{login_command(settings)}' and use InitiateOAuth=GETANDREFRESH"
        )
    return (
        f"run '{login_command(settings)}' (with this connection's -c or --profile) to sign in "
        "again; every process sharing the token store then uses the new tokens"
    )


class OAuthAuth(AuthBase):
    """Bearer-token auth for Sage Accounting and Sage 200."""

    def __init__(
        self,
        settings: Settings,
        store: TokenStore,
        *,
        token_url: str,
        login: Login | None = None,
        clock: Callable[[], float] = time.time,
        grant: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.token_url = token_url
        # Who sends the refresh grant for a refresh token and reads its answer: the token
        # endpoint from here, unless a caller relays it (the service's workers do, through
        # a process that records the answer even if the worker is killed meanwhile).
        self.grant = grant or (lambda token: token_endpoint.refresh(settings, token_url, token))
        self.login = login
        self._clock = clock
        self._lock = threading.RLock()
        self._tokens: TokenSet | None = None
        self.refreshes = 0  # refresh grants this object made (for tests and logs)

    # -- requests hook -------------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.current().access_token}"
        return request

    # -- tokens --------------------------------------------------------------------------

    def current(self) -> TokenSet:
        """A token to use now, refreshed first when it is about to expire."""
        with self._lock:
            if self._tokens is None:
                self._tokens = self._remember(self._initial())
            if self.settings.initiate_oauth != "OFF" and self._tokens.expired(
                self._margin(self._tokens), self._clock()
            ):
                self._tokens = self._remember(self._refresh(stale=self._tokens))
            return self._tokens

    def check(self) -> TokenSet:
        """Whether Sage still honours these tokens, asked the only way a refresh token can
        be tested: a refresh (single-flight as any other; the new pair is stored). Raises
        what a refresh raises: AuthError when the refresh token is refused."""
        with self._lock:
            if self.settings.initiate_oauth == "OFF":
                raise AuthError(
                    "InitiateOAuth=OFF never refreshes, so the token cannot be checked",
                    hint="use InitiateOAuth=GETANDREFRESH or REFRESH",
                )
            if self._tokens is None:
                self._tokens = self._remember(self._initial())
            self._tokens = self._remember(self._refresh(stale=self._tokens))
            return self._tokens

    @staticmethod
    def _remember(tokens: TokenSet) -> TokenSet:
        """Tokens obtained at run time join the secrets every log line is scrubbed of."""
        logs.register_secret(tokens.access_token)
        logs.register_secret(tokens.refresh_token)
        return tokens

    def _margin(self, tokens: TokenSet) -> float:
        lifetime = tokens.lifetime
        return min(REFRESH_MARGIN, lifetime / 4) if lifetime else REFRESH_MARGIN

    def _initial(self) -> TokenSet:
        s = self.settings
        if s.initiate_oauth == "OFF":
            if not s.oauth_access_token:
                raise AuthError(
                    "no access token: InitiateOAuth=OFF uses OAuthAccessToken",
                    hint="set OAuthAccessToken, or use InitiateOAuth=GETANDREFRESH",
                )
            return TokenSet(access_token=s.oauth_access_token)
        if s.initiate_oauth == "REFRESH":
            origin = fingerprint(s.oauth_refresh_token)
            # Under the lock: another process may be seeding or refreshing this very chain.
            with self.store.locked():
                stored = self.store.load()
                if stored is not None and (origin is None or stored.origin == origin):
                    return stored
                # New tokens given: start a new chain from them (expiry unknown unless only
                # a refresh token was given, in which case refresh at once).
                seeded = TokenSet(
                    access_token=s.oauth_access_token or "",
                    refresh_token=s.oauth_refresh_token,
                    expires_at=None if s.oauth_access_token else 0.0,
                    obtained_at=self._clock(),
                    origin=origin,
                )
                self.store.save(seeded)
                return seeded
        stored = self.store.load()
        if stored is not None and not self._new_code(stored):
            return stored
        if s.oauth_code:
            return self._exchange_code()
        if self.login is None:
            raise AuthError(
                "not logged in: no stored tokens for this connection", hint=_relogin_hint(s)
            )
        tokens = TokenSet.from_response(self.login(), self._clock())
        with self.store.locked():
            self.store.save(tokens)
        return tokens

    def _new_code(self, stored: TokenSet) -> bool:
        """Whether OAuthCode is a code these stored tokens did not come from, while they
        did come from a code: the platform's instance was authorized again."""
        code = fingerprint(self.settings.oauth_code)
        return bool(code and stored.origin and stored.origin.startswith("code:")) and (
            stored.origin != f"code:{code}"
        )

    def _exchange_code(self) -> TokenSet:
        """OAuthCode for a token pair, once: under the store's lock, and only while the
        store holds nothing from this code (a code is single-use: a second exchange would
        be refused, and a process that lost the race finds the pair stored)."""
        s = self.settings
        assert s.oauth_code is not None
        origin = f"code:{fingerprint(s.oauth_code)}"
        with self.store.locked():
            stored = self.store.load()
            if stored is not None and stored.origin == origin:
                return stored
            try:
                data = token_endpoint.exchange(
                    s, self.token_url, s.oauth_code, redirect_uri=s.callback_url
                )
            except TokenRefused as exc:
                raise AuthError(
                    f"{exc.message}: the authorization code (OAuthCode, an instance's "
                    "providerData.code) was refused: it is used, expired, or was issued to "
                    "another client or callback URL",
                    hint="authorize again for a new code (its CallbackURL must be the one the "
                    f"code was issued for), or run '{login_command(s)}'",
                ) from None
            fresh = TokenSet.from_response(data, self._clock())
            fresh = TokenSet(**{**fresh.to_json(), "origin": origin})
            self.store.save(fresh)
            log.info("exchanged the authorization code for a token pair (stored)")
            return fresh

    def _refresh(self, stale: TokenSet) -> TokenSet:
        """Single-flight refresh: only if the stored token is still the stale one."""
        with self.store.locked():
            stored = self.store.load()
            if (
                stored is not None
                and stored.access_token != stale.access_token
                and not stored.expired(self._margin(stored), self._clock())
            ):
                log.debug("another process refreshed the token; using it")
                return stored
            base = stored or stale
            if not base.refresh_token:
                raise AuthError(
                    "the access token expired and there is no refresh token",
                    hint=_relogin_hint(self.settings),
                )
            try:
                fresh = self.refresh_grant(base)
            except AnswerLost as lost:
                fresh = self._after_lost_answer(base, lost)
            self.store.save(fresh)
            return fresh

    def _after_lost_answer(self, base: TokenSet, lost: AnswerLost) -> TokenSet:
        """The refresh was sent and its answer lost: Sage may have rotated the token. Record
        it for every process sharing the store, then ask once more with the same token."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock()))
        marked = TokenSet(**{**base.to_json(), "refresh_lost": f"at {when}: {lost.cause}"})
        self.store.save(marked)
        log.warning("%s; asking once more with the same refresh token", lost.message)
        try:
            return self.refresh_grant(marked)
        except AnswerLost as again:
            raise RetriableAPIError(
                f"{again.message} (twice: Sage may have rotated the refresh token, and the new "
                "one was lost with the answer)",
                hint=f"{again.hint}; try again, and if the refresh token is then refused, "
                + _relogin_hint(self.settings),
            ) from None

    def refresh_grant(self, base: TokenSet) -> TokenSet:
        assert base.refresh_token is not None
        s = self.settings
        try:
            data = self.grant(base.refresh_token)
        except TokenRefused as exc:
            if exc.error != "invalid_grant":
                raise AuthError(
                    f"{exc.message}: the token endpoint refused this client or request",
                    hint="check OAuthClientId, OAuthClientSecret and OAuthTokenURL",
                ) from None
            if base.refresh_lost:
                raise AuthError(
                    f"{exc.message}: the refresh token in {self.store.location} was retired by a "
                    f"refresh whose answer was lost ({base.refresh_lost}); Sage no longer accepts "
                    "it (it documents no grace period for a rotated refresh token), so every "
                    "process sharing this store is signed out",
                    hint=_relogin_hint(s),
                ) from None
            raise AuthError(
                f"{exc.message}: the refresh token was already used, revoked or has expired",
                hint=_relogin_hint(s),
            ) from None
        self.refreshes += 1
        fresh = TokenSet.from_response(data, self._clock())
        if not fresh.refresh_token:  # some servers keep the old one when they don't rotate
            fresh = TokenSet(**{**fresh.to_json(), "refresh_token": base.refresh_token})
        return TokenSet(**{**fresh.to_json(), "origin": base.origin})

    def refresh_after_401(self, response: requests.Response) -> bool:
        """Called by the transport on a 401: refresh and let it retry once (not in OFF)."""
        if self.settings.initiate_oauth == "OFF":
            return False
        sent = response.request.headers.get("Authorization", "") if response.request else ""
        with self._lock:
            current = self._tokens
            if current is not None and sent and sent != f"Bearer {current.access_token}":
                return True  # another thread already refreshed
            self._tokens = self._remember(self._refresh(stale=current or TokenSet(access_token="")))
        return True

    def expired_message(self) -> str:
        if self.settings.initiate_oauth == "OFF":
            return (
                "the access token was refused: it has expired or is invalid "
                "(InitiateOAuth=OFF never refreshes)"
            )
        return "the access token was refused even after a refresh"


class CRMBasicAuth(HTTPBasicAuth):
    """HTTP Basic auth for Sage CRM, whose REST API is stateless."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.user or "", settings.password or "")

    def __repr__(self) -> str:
        return f"CRMBasicAuth(user={self.username!r})"
