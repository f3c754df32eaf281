"""Authentication objects for requests: OAuth 2.0 bearer tokens (with refresh) and basic auth.

:class:`OAuthAuth` implements the three ``InitiateOAuth`` modes:

- ``OFF``: the given ``OAuthAccessToken`` is used as it is; a 401 is an AuthError
  that says the token expired and how to get a new one;
- ``REFRESH``: start from the given access and refresh tokens (or the newer pair
  stored from them), refresh before expiry and on 401, store every new pair;
- ``GETANDREFRESH``: use the stored tokens, else log in (authorization code flow,
  see login.py), then refresh as above.

Refresh is single-flight across threads and processes: under the store's lock the
store is re-read, and the refresh grant is made only if the stored token is still
the stale one. The protocol itself is requests-oauthlib's (whose DEBUG logging,
which prints tokens, is kept off).
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

from sagesql.connector import logs, oauth_http
from sagesql.connector.properties import Settings
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


def _relogin_hint(settings: Settings) -> str:
    profile = f" --profile {settings.profile}" if settings.profile else ""
    return (
        f"log in again with 'sagesql auth login{profile}' (or InitiateOAuth=GETANDREFRESH), "
        "or give a new OAuthRefreshToken"
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
    ) -> None:
        self.settings = settings
        self.store = store
        self.token_url = token_url
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
        if stored is not None:
            return stored
        if self.login is None:
            raise AuthError(
                "not logged in: no stored tokens for this connection", hint=_relogin_hint(s)
            )
        tokens = TokenSet.from_response(self.login(), self._clock())
        with self.store.locked():
            self.store.save(tokens)
        return tokens

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
            fresh = self.refresh_grant(base)
            self.store.save(fresh)
            return fresh

    def refresh_grant(self, base: TokenSet) -> TokenSet:
        from oauthlib.oauth2 import OAuth2Error
        from requests_oauthlib import OAuth2Session

        s = self.settings
        session = OAuth2Session(s.oauth_client_id, token=base.as_oauthlib())
        session.proxies = s.proxies() or {}
        session.max_redirects = 0  # a 307 would carry the secret and refresh token elsewhere
        with oauth_http.permitted(self.token_url):
            try:
                data = session.refresh_token(
                    self.token_url,
                    refresh_token=base.refresh_token,
                    client_id=s.oauth_client_id,
                    client_secret=s.oauth_client_secret,
                    timeout=s.timeout,
                )
            except OAuth2Error as exc:
                reason = exc.error or "refused"
                raise AuthError(
                    f"refreshing the access token failed ({reason}): the refresh token was already "
                    "used, revoked or has expired",
                    hint=_relogin_hint(s),
                ) from None
            except requests.TooManyRedirects:
                raise AuthError(
                    f"the token endpoint {self.token_url} answered with a redirect, which is "
                    "not followed (it would carry the client secret and refresh token along)",
                    hint="check OAuthTokenURL",
                ) from None
            except requests.RequestException as exc:
                raise RetriableAPIError(
                    f"could not reach the token endpoint {self.token_url}: {type(exc).__name__}",
                    hint="check the network, proxy and OAuthTokenURL, then try again",
                ) from None
            finally:
                session.close()
        self.refreshes += 1
        fresh = TokenSet.from_response(dict(data), self._clock())
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
