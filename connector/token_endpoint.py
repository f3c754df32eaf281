"""The OAuth token endpoint: a grant posted, its answer read strictly, each failure named.

Both grants sagesql makes, ``authorization_code`` (a login) and ``refresh_token``, are
one form POST (client id and secret in the form, as Sage expects) through a bounded
session (:mod:`bounded_http`): no redirect is followed, at most 1 MiB is read, and the
whole exchange takes at most the connection's ``Timeout``. What came back decides:

================================================  ==========================================
a JSON object with a usable token (2xx)           the token answer (a dict)
an OAuth error (``{"error": ...}``)               :class:`TokenRefused` (an AuthError) with
                                                  the error code: ``invalid_grant`` is a used,
                                                  revoked or expired grant; others name the
                                                  client or request
429, 5xx                                          RetriableAPIError: try again later
another 4xx or 3xx, HTML, text                    APIError: OAuthTokenURL is not a token
                                                  endpoint (a web page, a proxy's page)
nothing: refused, unknown host, connect timeout   RetriableAPIError: nothing was sent
sent, and no usable answer: cut, dropped, timed   :class:`AnswerLost` (a RetriableAPIError):
out, too large, or a 2xx that is not a token      the server may have acted on the grant
================================================  ==========================================

Messages never contain a token, a code or the client secret, even when the server
echoes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from sagesql.connector import oauth_http
from sagesql.connector.bounded_http import RedirectRefused, bounded_session, describe
from sagesql.connector.logs import redact, redact_url
from sagesql.connector.properties import Settings
from sagesql.connector.tokenstore import BadTokens, TokenSet
from sagesql.errors import APIError, AuthError, RetriableAPIError

DESCRIPTION_LIMIT = 200  # characters of a server's error_description quoted in a message


class TokenRefused(AuthError):
    """The token endpoint answered an OAuth error (``error`` is its code)."""

    def __init__(self, message: str, *, error: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.error = error


class AnswerLost(RetriableAPIError):
    """The grant was sent and no usable answer came back: the server may have acted on it
    (a refresh grant may have retired the refresh token it carried). ``cause`` says what
    came back instead, in a few words."""

    def __init__(self, message: str, *, cause: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cause = cause


def refresh(settings: Settings, url: str, refresh_token: str) -> dict[str, Any]:
    """The refresh grant's token answer."""
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return post_grant(settings, url, fields, what="refreshing the access token")


def exchange(
    settings: Settings, url: str, code: str, *, redirect_uri: str, verifier: str | None = None
) -> dict[str, Any]:
    """The authorization code grant's token answer."""
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier:
        fields["code_verifier"] = verifier
    return post_grant(settings, url, fields, what="exchanging the login code")


def post_grant(
    settings: Settings, url: str, fields: Mapping[str, str], *, what: str
) -> dict[str, Any]:
    """POST a grant (the client's id and secret added) and read the answer strictly."""
    form = dict(fields)
    if settings.oauth_client_id:
        form["client_id"] = settings.oauth_client_id
    if settings.oauth_client_secret:
        form["client_secret"] = settings.oauth_client_secret
    secrets = [v for k, v in form.items() if k not in ("grant_type", "redirect_uri", "client_id")]
    shown = redact_url(url)
    with oauth_http.permitted(url), bounded_session(deadline=float(settings.timeout)) as session:
        session.proxies.update(settings.proxies() or {})
        try:
            response = session.post(
                url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=float(settings.timeout),
                allow_redirects=False,
            )
        except RedirectRefused as exc:
            raise APIError(
                f"{what}: the token endpoint {shown} answered {exc.status} redirecting to "
                f"{redact_url(exc.location)}; sagesql never follows a token endpoint's redirect "
                "(the grant and the client secret would go along)",
                hint="set OAuthTokenURL to the token endpoint itself",
            ) from None
        except requests.RequestException as exc:
            raise _unanswered(exc, what, shown, secrets) from None
    return read_answer(
        response.status_code, response.headers, response.content, what, shown, secrets
    )


def revoke(settings: Settings, url: str, token: str) -> bool:
    """Revoke a token (RFC 7009) through a bounded session: whether the endpoint said so."""
    form = {"token": token}
    if settings.oauth_client_id:
        form["client_id"] = settings.oauth_client_id
    if settings.oauth_client_secret:
        form["client_secret"] = settings.oauth_client_secret
    with (
        oauth_http.permitted(url, "the revoke URL"),
        bounded_session(deadline=float(settings.timeout)) as session,
    ):
        session.proxies.update(settings.proxies() or {})
        try:
            answer = session.post(
                url, data=form, timeout=float(settings.timeout), allow_redirects=False
            )
        except requests.RequestException:
            return False
    return bool(answer.ok)


def _unanswered(
    exc: requests.RequestException, what: str, shown: str, secrets: list[str]
) -> RetriableAPIError:
    if _not_sent(exc):
        return RetriableAPIError(
            f"{what}: could not reach the token endpoint {shown} ({describe(exc)})",
            hint="check the network, proxy and OAuthTokenURL, then try again",
        )
    cause = _clean(describe(exc), secrets)
    return AnswerLost(
        f"{what}: the token endpoint's answer was lost ({cause})",
        cause=cause,
        hint="the grant was sent, and Sage may have carried it out",
    )


def _not_sent(exc: requests.RequestException) -> bool:
    """Whether the request surely never reached the server (no connection was made)."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.ProxyError)):
        return True
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, NewConnectionError)


def read_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    what: str,
    shown: str,
    secrets: list[str],
) -> dict[str, Any]:
    """The token answer, or the error that says what the endpoint answered instead."""
    kind = (headers.get("Content-Type") or "no content type").split(";")[0].strip()[:60]
    data = _json_object(body)
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"]:
        code = _clean(data["error"], secrets)[:60]
        description = data.get("error_description")
        said = f": {_clean(description, secrets)}" if isinstance(description, str) else ""
        if status == 429 or status >= 500:
            raise RetriableAPIError(
                f"{what}: the token endpoint answered {status} ({code}{said})",
                hint="Sage's sign-in service is busy or down: try again later",
            )
        raise TokenRefused(f"{what} was refused ({code}{said})", error=code)
    if status == 429 or status >= 500:
        raise RetriableAPIError(
            f"{what}: the token endpoint {shown} answered {status} ({kind})",
            hint="Sage's sign-in service is busy or down: try again later",
        )
    if not 200 <= status < 300:
        raise APIError(
            f"{what}: the token endpoint {shown} answered {status} with {kind}, not an OAuth "
            "answer",
            hint="check OAuthTokenURL: a web page or a proxy answers there, not Sage's token "
            "endpoint",
        )
    if data is None:
        looks = "JSON that breaks off, is malformed or is no object" if "json" in kind else kind
        raise AnswerLost(
            f"{what}: the token endpoint {shown} answered {status} with {looks}, not a token",
            cause=f"{status} with {looks}",
            hint="if this repeats, check OAuthTokenURL: a web page or a proxy may answer there",
        )
    try:
        TokenSet.from_response(data)
    except BadTokens as exc:
        raise AnswerLost(
            f"{what}: the token endpoint answered {status} with no usable token ({exc})",
            cause=f"{status} with no usable token ({exc})",
            hint="if this repeats, check OAuthTokenURL",
        ) from None
    return data


def _json_object(body: bytes) -> Any:
    """The body as JSON when it is a JSON object; None when it is not JSON at all."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.lstrip().startswith("{"):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _clean(text: str, secrets: list[str]) -> str:
    """Server-supplied text fit for a one-line message: printable, short, secrets masked."""
    flat = redact(" ".join("".join(c if c.isprintable() else " " for c in text).split()), secrets)
    return flat if len(flat) <= DESCRIPTION_LIMIT else flat[:DESCRIPTION_LIMIT] + "..."
