"""The operations page at ``/``: the organization's instances, their lag and outbox, dead letters.

Server-rendered HTML with plain forms (no script): a sign-in form takes the
organization and user secrets once and sets a signed, HttpOnly, SameSite=Strict
cookie naming the organization (never the secrets) for eight hours; each instance
shows per resource its watermark, lag, outbox, dead letters and last result, its
recent errors (the instance's, each resource's last failed cycle and delivery), and
its dead letters with a replay button (a form carrying a token derived from the
cookie, against cross-site posts).
"""

from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sagesql.errors import Error
from sagesql.service.operations import Operations, Org

COOKIE = "sagesql_ops"
SESSION_SECONDS = 8 * 3600
MAX_FORM = 4096

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
.error{color:#a00}.ok{color:#070}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body>{body}</body></html>",
        status,
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self'",
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        },
    )


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


class Pages:
    def __init__(self, operations: Operations) -> None:
        self.operations = operations
        self.box = operations.box

    # -- the session cookie ----------------------------------------------------------------

    def _session(self, request: Request) -> tuple[Org, str] | None:
        value = request.cookies.get(COOKIE, "")
        try:
            org_id, expires, name_hex, signature = value.split(".")
            name = bytes.fromhex(name_hex).decode("utf-8")
        except ValueError:
            return None
        payload = f"{org_id}.{expires}.{name_hex}"
        if not self.box.verify(payload, signature) or float(expires) < time.time():
            return None
        return Org(org_id, name), value

    def _csrf(self, cookie: str) -> str:
        return self.box.sign("replay\n" + cookie)

    async def _form(self, request: Request) -> dict[str, str]:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_FORM:
                return {}
        return dict(parse_qsl(data.decode("utf-8", "replace")))

    # -- routes ----------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return self._sign_in()
        org, cookie = session
        body = await run_in_threadpool(self._overview, org, self._csrf(cookie))
        replayed = request.query_params.get("replayed", "")
        if replayed.isdigit():
            body = f"<p class=ok id=replayed>{int(replayed)} dead letter(s) sent again</p>" + body
        return _page(f"sagesql: {org.name}", body)

    def _sign_in(self, problem: str = "", status: int = 200) -> HTMLResponse:
        said = f"<p class=error>{_e(problem)}</p>" if problem else ""
        return _page(
            "sagesql: sign in",
            "<h1>sagesql instances</h1>" + said + "<form method=post action=/login>"
            "<p><label>Organization secret <input name=organization_secret type=password "
            "required></label></p>"
            "<p><label>User secret <input name=user_secret type=password required></label></p>"
            "<p><button type=submit>Sign in</button></p></form>",
            status,
        )

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        org = await run_in_threadpool(
            self.operations.authenticate,
            form.get("organization_secret", ""),
            form.get("user_secret", ""),
        )
        if org is None:
            return self._sign_in("wrong secrets", 401)
        expires = str(int(time.time() + SESSION_SECONDS))
        payload = f"{org.id}.{expires}.{org.name.encode('utf-8').hex()}"
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            f"{payload}.{self.box.sign(payload)}",
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def replay(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return self._sign_in("sign in first", 401)
        org, cookie = session
        form = await self._form(request)
        if not self.box.verify("replay\n" + cookie, form.get("csrf", "")):
            return _page("sagesql", "<p class=error>the form is stale: reload the page</p>", 403)
        try:
            done = await run_in_threadpool(
                self.operations.replay, org, request.path_params["id"], form.get("resource") or None
            )
        except Error as exc:
            return _page("sagesql", f"<p class=error>{_e(exc.message)}</p>", 404)
        return RedirectResponse(f"/?replayed={done['replayed']}", status_code=303)

    # -- the overview ----------------------------------------------------------------------

    def _overview(self, org: Org, csrf: str) -> str:
        parts = [
            f"<h1>{_e(org.name)}: instances</h1>",
            "<form method=post action=/logout><button type=submit>Sign out</button></form>",
        ]
        instances = self.operations.list(org)
        if not instances:
            parts.append("<p>No instances yet: POST /instances creates one.</p>")
        for instance in instances:
            parts.append(self._instance(org, instance, csrf))
        return "".join(parts)

    def _instance(self, org: Org, instance: dict[str, Any], csrf: str) -> str:
        iid = instance["id"]
        try:
            status = self.operations.status(org, iid)
        except Error as exc:
            title = f"<h2>{_e(instance['name'])}</h2>"
            return f"<section>{title}<p class=error>{_e(exc.message)}</p></section>"
        rows = []
        dead_total = 0
        for r in status["resources"]:
            dead_total += r["dead_letters"] or 0
            result = r["last_result"] or ""
            css = "error" if result.startswith("failed") else "ok"
            rows.append(
                "<tr>"
                f"<td>{_e(r['table'])}</td><td>{_e(r['watermark'])}</td><td>{_e(r['lag'])}</td>"
                f"<td>{_e(r['outbox'])}</td><td>{_e(r['dead_letters'])}</td>"
                f"<td>{_e(r['delivered'])}</td><td class={css}>{_e(result)}</td>"
                f"<td class=error>{_e(r['delivery_error'])}</td>"
                "</tr>"
            )
        errors = [status["error"]] if status["error"] else []
        for r in status["resources"]:
            if (r["last_result"] or "").startswith("failed"):
                errors.append(f"{r['table']}: last cycle {r['last_result']}")
            if r["delivery_error"]:
                errors.append(f"{r['table']}: delivery {r['delivery_error']}")
        recent = (
            "<ul class=error>" + "".join(f"<li>{_e(e)}</li>" for e in errors) + "</ul>"
            if errors
            else "<p class=ok>none</p>"
        )
        dead = self._dead_letters(org, iid, csrf) if dead_total else "<p>none</p>"
        return (
            f"<section id=instance-{_e(iid)}><h2>{_e(instance['name'])}</h2>"
            f"<p>id {_e(iid)} · {_e(instance['element']['key'])} · every "
            f"{_e(status['interval_seconds'])} s · "
            f"{'polling' if status['polling'] else 'not polling'}</p>"
            "<table class=resources><tr><th>resource</th><th>watermark</th><th>lag</th>"
            "<th>outbox</th><th>dead letters</th><th>delivered</th><th>last result</th>"
            "<th>delivery error</th></tr>" + "".join(rows) + "</table>"
            f"<h3>Recent errors</h3><div class=errors>{recent}</div>"
            f"<h3>Dead letters</h3><div class=dead>{dead}</div></section>"
        )

    def _dead_letters(self, org: Org, iid: str, csrf: str) -> str:
        letters = self.operations.events(org, iid, "dead", 50)
        rows = "".join(
            f"<tr><td>{_e(d['messageId'])}</td><td>{_e(d['resource'])}</td>"
            f"<td>{len(d['events'])}</td><td>{_e(d['attempts'])}</td>"
            f"<td class=error>{_e(d['error'])}</td></tr>"
            for d in letters
        )
        return (
            "<table><tr><th>message</th><th>resource</th><th>events</th><th>attempts</th>"
            f"<th>error</th></tr>{rows}</table>"
            f"<form method=post action=/ui/instances/{_e(iid)}/replay>"
            f"<input type=hidden name=csrf value={_e(csrf)}>"
            f"<button type=submit name=replay value={_e(iid)}>Replay {len(letters)} dead "
            "letter(s)</button></form>"
        )
