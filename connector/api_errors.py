"""Sage's error answers turned into exceptions of the tree, with one-line messages.

Three body formats, one reader (it recognises each, whatever the product says):

- Sage Accounting, and the Sage 200 gateway: a JSON array of
  ``{"$severity", "$dataCode", "$message", "$source"}``;
- Sage CRM (SData): ``{"$diagnoses": [{"$severity", "$sdataCode", "$message", "$payloadPath"}]}``;
- anything else JSON: ``{"Message": ...}`` (ASP.NET), ``{"error": {"message"}}`` (OData),
  ``{"error", "error_description"}`` (OAuth), a bare string.

Bodies that are not JSON (an HTML page from a proxy, an empty or cut body) become an
:class:`APIError` that says what came instead, cut to about 200 characters. The
message names the request and each field with its reason::

    POST /contacts: contact.name: can't be blank (422 RecordInvalid)

and the exception keeps the details: ``.status``, ``.errors`` (a list of
``(field, message)``, field None when Sage named none), ``.codes``, ``.method`` and
``.path``, for per-record results.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import requests

from sagesql import errors
from sagesql.connector.logs import redact

SNIPPET = 200


class Detail(msgspec.Struct, frozen=True):
    """One problem Sage reported."""

    message: str
    field: str | None = None
    code: str | None = None
    severity: str | None = None

    def text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def one_line(text: str, limit: int = SNIPPET) -> str:
    """Whitespace collapsed, cut to ``limit`` characters, secrets masked."""
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) > limit:
        flat = flat[: limit - 3].rstrip() + "..."
    return redact(flat)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _from_item(item: Any) -> Detail | None:
    """A detail from one element of an error array or diagnoses list."""
    if isinstance(item, str):
        return Detail(item)
    if not isinstance(item, dict):
        return None
    message = next(
        (
            _text(item[k])
            for k in ("$message", "message", "Message", "error_description", "detail", "title")
            if _text(item.get(k))
        ),
        None,
    )
    code = next(
        (
            _text(item[k])
            for k in ("$dataCode", "$sdataCode", "$applicationCode", "code", "error")
            if _text(item.get(k))
        ),
        None,
    )
    field = next(
        (
            _text(item[k])
            for k in ("$source", "$payloadPath", "source", "field", "target", "PropertyName")
            if _text(item.get(k))
        ),
        None,
    )
    if message is None and code is None:
        return None
    return Detail(message or code or "", field, code, _text(item.get("$severity")))


def parse_details(data: Any) -> list[Detail] | None:
    """The problems in a parsed error body, or None when the body is no known error shape."""
    if isinstance(data, str):
        return [Detail(data)] if data.strip() else None
    if isinstance(data, list):
        items = [d for d in map(_from_item, data) if d is not None]
        return items or None
    if not isinstance(data, dict):
        return None
    for key in ("$diagnoses", "errors", "Errors", "details"):
        if isinstance(data.get(key), list):
            listed = parse_details(data[key])
            if listed:
                return listed
    inner = data.get("error")
    if isinstance(inner, dict):  # OData: {"error": {"code", "message", "details"}}
        more = parse_details(inner.get("details")) if inner.get("details") else None
        head = _from_item(inner)
        return ([head] if head else []) + (more or []) or None
    # ASP.NET's ModelState: {"Message", "ModelState": {"field": ["reason"]}}
    state = data.get("ModelState") or data.get("modelState")
    if isinstance(state, dict) and state:
        return [
            Detail(str(reason), field=name or None)
            for name, reasons in state.items()
            for reason in (reasons if isinstance(reasons, list) else [reasons])
        ]
    head = _from_item(data)
    return [head] if head else None


def _plain(text: str, kind: str) -> bool:
    """A body that is a reason in words: not empty, not HTML, not (cut) JSON."""
    if not text or "html" in kind or "json" in kind or "xml" in kind:
        return False
    return not text.startswith(("<", "{", "["))


def _qualify(field: str | None, envelope: str | None) -> str | None:
    """``name`` -> ``contact.name`` when the request body was ``{"contact": {...}}``."""
    if field and envelope and "." not in field and not field.startswith("$"):
        return f"{envelope}.{field}"
    return field


def envelope_of(body: Any) -> str | None:
    """The singular key a write body is wrapped in (Accounting), if any."""
    if isinstance(body, dict) and len(body) == 1:
        (key,) = body
        if isinstance(body[key], dict):
            return str(key)
    return None


# msgspec reads UTF-8 bytes about three times as fast as json.loads reads the text
# requests decodes first (a scan spent a third of its time there); same values, big
# integers included.
_decode = msgspec.json.Decoder().decode


def json_of(response: requests.Response) -> Any:
    """The answer's JSON; ValueError when it is not JSON, nested too deep included (a
    hostile ``[[[[...`` raises RecursionError from the parser)."""
    try:
        if (response.encoding or "utf-8").lower() in ("utf-8", "utf8"):
            try:
                return _decode(response.content)
            except msgspec.DecodeError:
                pass  # what the json module accepts beyond strict JSON (NaN, a BOM...)
        return response.json()
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def _content_type(response: requests.Response) -> str:
    return (response.headers.get("Content-Type") or "no content type").split(";")[0].strip()


def unexpected(
    response: requests.Response,
    method: str,
    path: str,
    *,
    why: str = "",
    cls: type[errors.Error] = errors.APIError,
) -> errors.Error:
    """Sage (or something between) answered a body that is not what the API sends."""
    text = response.content.decode(response.encoding or "utf-8", errors="replace")
    shown = f": {one_line(text)!r}" if text.strip() else " with an empty body"
    exc = cls(
        f"{method} {path}: the API answered something unexpected: {response.status_code} "
        f"{_content_type(response)}{why}{shown}",
        hint="check the URL connection property and any proxy between you and Sage",
    )
    return _attach(exc, response, method, path, [])


def _attach(
    exc: errors.Error,
    response: requests.Response,
    method: str,
    path: str,
    details: list[Detail],
) -> errors.Error:
    exc.status = response.status_code  # type: ignore[attr-defined]
    exc.errors = [(d.field, d.message) for d in details]  # type: ignore[attr-defined]
    exc.codes = [d.code for d in details]  # type: ignore[attr-defined]
    exc.method = method  # type: ignore[attr-defined]
    exc.path = path  # type: ignore[attr-defined]
    return exc


def _class_for(status: int, details: list[Detail], method: str) -> type[errors.Error]:
    if status in (401, 403):
        return errors.AuthError
    if status == 422 or status == 409:
        return errors.IntegrityError
    # A refused write is about the record, unless the request itself was malformed
    # (a missing X-Site header, say).
    if (
        status == 400
        and method in ("POST", "PUT", "PATCH")
        and details
        and not any(_about_request(d) for d in details)
    ):
        return errors.IntegrityError
    if status in (405, 501):
        return errors.NotSupportedError
    if status == 429 or (status >= 500 and method in ("GET", "HEAD", "PUT", "DELETE")):
        return errors.RetriableAPIError
    return errors.APIError


def _about_request(detail: Detail) -> bool:
    field = (detail.field or "").lower()
    code = (detail.code or "").lower()
    return field.startswith("x-") or "header" in code or "syntax" in code or "query" in code


_HINTS = {
    401: "the credentials were refused: check them, or log in again with 'sagesql auth login'",
    403: "the user may not do this: check the user's rights, the business or company, "
    "and the Scope (full_access to write)",
    404: "the API has nothing at this path: check the URL connection property and the table",
}
# Only a request for one record (a path with its key) may blame the record.
RECORD_NOT_FOUND = "check the key; the record may have been deleted"


def from_response(
    response: requests.Response,
    method: str,
    path: str,
    *,
    body: Any = None,
    hint: str | None = None,
    summary: str | None = None,
    one_record: bool = False,
) -> errors.Error:
    """The exception for an error answer (status >= 400) to ``method path``.

    ``body`` is the request's JSON body (its envelope key qualifies field names);
    ``summary`` goes before Sage's own words (what the failure means for the user);
    ``one_record``: the path addresses one record by its key (a 404 to a GET, PUT or
    DELETE of it may then say the record may have been deleted; a list may not).
    """
    method = method.upper()
    status = response.status_code
    try:
        data = json_of(response) if response.content.strip() else None
    except ValueError:
        data = None
    details = parse_details(data) if data is not None else None
    if not details:
        text = response.content.decode(response.encoding or "utf-8", errors="replace").strip()
        kind = _content_type(response).lower()
        if data is not None or not _plain(text, kind):
            # HTML from a proxy, an empty or cut body, JSON of no known shape: say what came.
            odd: type[errors.Error] = errors.AuthError if status in (401, 403) else errors.APIError
            exc = unexpected(response, method, path, cls=odd)
            if summary:
                exc = odd(f"{method} {path}: {summary} ({status})", hint=hint or exc.hint)
            elif hint:
                exc = odd(exc.message, hint=hint)
            return _attach(exc, response, method, path, [])
        details = [Detail(text)]  # a short plain-text reason
    envelope = envelope_of(body)
    details = [
        Detail(one_line(d.message), _qualify(d.field, envelope), d.code, d.severity)
        for d in details
    ]
    codes = sorted({d.code for d in details if d.code and d.code != d.message})
    status_text = f"{status} {', '.join(codes)}" if codes else str(status)
    said = "; ".join(d.text() for d in details)
    lead = f"{summary}: " if summary else ""
    message = f"{method} {path}: {lead}{said} ({status_text})"
    cls = _class_for(status, details, method)
    if hint is None:
        record = one_record and method in ("GET", "PUT", "PATCH", "DELETE")
        hint = RECORD_NOT_FOUND if status == 404 and record else _HINTS.get(status)
    exc = cls(one_line(message, 1000), hint=hint)
    return _attach(exc, response, method, path, details)
