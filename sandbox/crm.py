"""The Sage CRM emulator: the sagecrm2 REST API (SData 2.0 style) over the demo data.

Served under ``/sdata/crmj/sagecrm2/-`` (any ``{install}j``), one entity per table
definition of the catalog (its ``resource``: Company, Person, Lead, Opportunity, Users,
Cases, Communication)::

    GET    /{Entity}?where=...&orderBy=...&startIndex=1&count=100   a page of records
    GET    /{Entity}('43')                                          one record
    POST   /{Entity}                  create (JSON object of fields)        -> 201
    PATCH  /{Entity}('43')            update the given fields (PUT alike)   -> 200
    DELETE /{Entity}('43')            soft delete: ``*_deleted`` = 1        -> 204

``where`` is strict (sandbox/sdata.py): only the operators Sage documents for sagecrm2
(``eq gt ge like between in``, ``and or``); ``ne lt le``, ``= <> < <= > >=``, ``not`` and
``@...@`` date literals are refused with 400 ``BadWhereSyntax``, the ``$diagnoses``
message naming the form, unless ``SandboxConfig.crm_filter_operators`` is ``extended``.

Choices where Sage documents nothing (the connector must not rely on more):

- paging: ``count`` defaults to :data:`DEFAULT_PAGE_SIZE` (100) and is clamped to
  :data:`MAX_PAGE_SIZE` (1000), the table definitions' ``paging`` (schemas/generator/crm.py).
  Sage's reference documents ``count`` and ``startIndex`` but, as far as this repository
  records, no maximum: 100 is the default page size CRM's configuration ships with, and
  1000 is an assumed server cap, chosen so that a connector asking for more is visibly
  clamped (``$itemsPerPage`` states the page size used; the last page may hold fewer);
  ``count=0`` answers the total only. Unless ``orderBy`` says otherwise records come in key
  order (ids are handed out ascending, so insertion order is key order); ties of an
  ``orderBy`` are broken by key, so pages are stable.
- text compares as on SQL Server's default collation: without regard to case, in ``where``
  and ``orderBy`` alike.
- writes: field names match in any case; ``$``-prefixed members (``$key``, ``$url`` of a
  record sent back) and read-only fields (ids, audit fields) are ignored; unknown fields and
  values of the wrong type are refused with 400. ``*_createdby``/``*_updatedby`` are the
  ``Users`` record whose logon is the caller's (user 1 when none is). Links to other
  records are not checked.
- a deleted record keeps its id (never reused), leaves lists and single GETs (404), and
  another DELETE of it is a 404.
- errors: ``{"$diagnoses": [{"$severity", "$sdataCode", "$message", "$location"?}]}`` with
  codes BadUrlSyntax, ResourceKindNotFound, ResourceNotFound, BadQueryParameter,
  BadWhereSyntax, ApplicationDiagnosis (bad bodies), MethodNotAllowed, AuthenticationFailed,
  TooManyRequests.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.wrappers import Request, Response

from sagesql.sandbox import sdata
from sagesql.sandbox.app import ApiError, ProductApp, json_response
from sagesql.sandbox.clock import Clock, sortable
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.crm_data import Audit, CrmSeeder, crm_tables, local_text
from sagesql.sandbox.store import Store, field
from sagesql.schemas.catalog import Column, Table

SCOPE = "crm"
REALM = 'Basic realm="SageCRM"'
DEFAULT_USER_ID = 1

_PATH = re.compile(
    r"^/sdata/[^/]+j/sagecrm2/-/(?P<entity>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\((?:'(?P<quoted>[^']*)'|(?P<bare>[^)']*))\))?/?$"
)
_INTEGER = re.compile(r"^-?\d+$")

# The page sizes this emulator applies (see the module docstring: an assumption, since
# no Sage-documented maximum is recorded); a table definition's paging may say otherwise.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _wall_clock(local: tzinfo) -> Any:
    """A date literal as the local wall-clock text the records hold (fraction kept, if any)."""

    def text(instant: datetime) -> str:
        wall = instant.astimezone(local).strftime("%Y-%m-%dT%H:%M:%S")
        return wall + (f".{instant.microsecond:06d}" if instant.microsecond else "")

    return text


class Entity:
    """One CRM entity as its table definition describes it: columns, audit fields, filters."""

    def __init__(self, table: Table, local: tzinfo) -> None:
        self.table = table
        self.name = table.resource
        self.audit = Audit.of(table)
        self.columns: dict[str, Column] = {c.name.lower(): c for c in table.columns}
        language = table.pushdown.expression
        sort = table.pushdown.sort
        fields = {c.name.lower(): self._field(c, local, language) for c in table.columns}
        self.where_fields = (
            {n: f for n, f in fields.items() if n in {c.lower() for c in language.columns}}
            if language
            else {}
        )
        self.order_fields = (
            {n: f for n, f in fields.items() if n in {c.lower() for c in sort.columns}}
            if sort
            else {}
        )

    def _field(self, column: Column, local: tzinfo, language: Any) -> sdata.Field:
        name = column.name
        operators = language.operators(name) if language else frozenset()
        sql, order_sql = field(name), None
        date_param: Any = None
        if name == self.audit.key:
            order_sql = "seq"  # ids ascend with insertion: the indexed order is key order
        if name in {self.audit.updated, self.audit.created}:
            # The store keeps both as indexed sortable UTC text equal to the record's value.
            sql = "updated" if name == self.audit.updated else "created"
            date_param = sortable
        elif column.type in {"DATE", "DATETIME"}:
            # Every stored date carries the same offset: compare the local wall-clock text.
            sql = f"substr({field(name)}, 1, 19)"
            date_param = _wall_clock(local)
        return sdata.Field(name, column.type, sql, frozenset(operators), order_sql, date_param)


class CrmApp(ProductApp):
    """Sage CRM's sagecrm2 REST API with basic auth, SData paging, ``where`` and ``orderBy``."""

    product = "sage_crm"
    uses_oauth = False

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(config, clock=clock, store=store)
        self.local = timezone(timedelta(minutes=self.config.crm_utc_offset_minutes))
        tables = crm_tables()
        self.entities = {name.lower(): Entity(t, self.local) for name, t in tables.items()}
        self.store.set_seeder(CrmSeeder(self.config.seed, self.config.rows, self.local))
        self._write_lock = threading.Lock()

    # -- ProductApp hooks ----------------------------------------------------------------

    def authenticate(self, request: Request) -> str:
        """The caller's logon, from HTTP Basic credentials checked against config.crm_users."""
        auth = request.authorization
        if auth is None or auth.type.lower() != "basic":
            raise ApiError(
                401,
                "AuthenticationFailed",
                "authentication required: send HTTP Basic credentials",
                headers={"WWW-Authenticate": REALM},
            )
        user, password = auth.username or "", auth.password or ""
        expected = self.config.crm_users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise ApiError(
                401,
                "AuthenticationFailed",
                "invalid user name or password",
                headers={"WWW-Authenticate": REALM},
            )
        return user

    def rate_key(self, request: Request, principal: Any) -> str:
        return f"user:{principal}"

    def error(self, err: ApiError) -> Response:
        diagnosis = {"$severity": "error", "$sdataCode": err.code, "$message": err.message}
        if err.source:
            diagnosis["$location"] = err.source
        return json_response({"$diagnoses": [diagnosis]}, err.status, err.headers)

    def route(self, request: Request, principal: Any) -> Response:
        match = _PATH.match(request.path)
        if match is None:
            raise ApiError(404, "BadUrlSyntax", f"no resource at {request.path}")
        entity = self.entities.get(match["entity"].lower())
        if entity is None:
            names = ", ".join(e.name for e in self.entities.values())
            raise ApiError(
                404, "ResourceKindNotFound", f"unknown entity {match['entity']!r} (use {names})"
            )
        base = request.host_url.rstrip("/") + request.path[: match.start("entity") - 1]
        key = match["quoted"] if match["quoted"] is not None else match["bare"]
        method = request.method
        if key is None:
            if method in {"GET", "HEAD"}:
                return self.list(request, entity, base)
            if method == "POST":
                return self.create(request, entity, base, principal)
            raise self._not_allowed(method, "GET, POST")
        key = key.strip()
        if method in {"GET", "HEAD"}:
            return json_response(self._present(entity, self._load(entity, key), base))
        if method in {"PATCH", "PUT"}:
            return self.update(request, entity, key, base, principal)
        if method == "DELETE":
            return self.delete(entity, key, principal)
        raise self._not_allowed(method, "GET, PATCH, PUT, DELETE")

    # -- reads ---------------------------------------------------------------------------

    def list(self, request: Request, entity: Entity, base: str) -> Response:
        args = {k.lower(): v for k, v in request.args.items()}
        paging = entity.table.paging
        start = self._int_arg(args, "startIndex", 1, minimum=1)
        count = min(
            self._int_arg(args, "count", paging.default_page_size or DEFAULT_PAGE_SIZE, minimum=0),
            paging.max_page_size or MAX_PAGE_SIZE,
        )
        clauses: list[str] = []
        params: list[Any] = []
        text = args.get("where", "")
        if text.strip():
            try:
                sql, values = sdata.compile_where(
                    text,
                    entity.where_fields,
                    self.local,
                    extended=self.config.crm_filter_operators == "extended",
                )
            except sdata.SDataError as err:
                raise ApiError(400, "BadWhereSyntax", str(err), "where") from None
            clauses.append(sql)
            params += values
        lag = self.visible_before()
        if lag is not None:
            clauses.append("updated < ?")
            params.append(lag)
        try:
            order = sdata.compile_order(args.get("orderby", ""), entity.order_fields)
        except sdata.SDataError as err:
            raise ApiError(400, "BadQueryParameter", str(err), "orderBy") from None
        where = " AND ".join(clauses)
        total = self.store.count(SCOPE, entity.name, where=where, params=params)
        rows = (
            self.store.select(
                SCOPE,
                entity.name,
                where=where,
                params=params,
                order=", ".join([*order, "seq"]),
                limit=count,
                offset=start - 1,
            )
            if count
            else []
        )
        return json_response(
            {
                "$totalResults": total,
                "$startIndex": start,
                "$itemsPerPage": count,
                "$resources": [self._present(entity, json.loads(r[0]), base) for r in rows],
            }
        )

    def _load(self, entity: Entity, key: str) -> dict[str, Any]:
        record = self.store.get(SCOPE, entity.name, key) if _INTEGER.match(key) else None
        if record is None:
            raise ApiError(404, "ResourceNotFound", f"no {entity.name} with key {key!r}")
        return record

    def _present(self, entity: Entity, record: dict[str, Any], base: str) -> dict[str, Any]:
        key = str(record[entity.audit.key])
        return {
            "$key": key,
            "$url": f"{base}/{entity.name}('{key}')",
            "$updated": record.get(entity.audit.updated),
            **record,
        }

    # -- writes --------------------------------------------------------------------------

    def create(self, request: Request, entity: Entity, base: str, principal: Any) -> Response:
        values = self._values(entity, self._body(request), creating=True)
        audit = entity.audit
        with self._write_lock:
            key = self.store.max_key(SCOPE, entity.name) + 1
            now, user = self._now(), self._user_id(principal)
            stamp = local_text(now, self.local)
            server = {
                audit.key: key,
                audit.created: stamp,
                audit.updated: stamp,
                audit.created_by: user,
                audit.updated_by: user,
                audit.deleted: None,
            }
            record = {
                c.name: server[c.name] if c.name in server else values.get(c.name)
                for c in entity.table.columns
            }
            self.store.insert(
                SCOPE,
                entity.name,
                record,
                key=audit.key,
                created=sortable(now),
                updated=sortable(now),
            )
        body = self._present(entity, record, base)
        return json_response(body, 201, {"Location": body["$url"]})

    def update(
        self, request: Request, entity: Entity, key: str, base: str, principal: Any
    ) -> Response:
        values = self._values(entity, self._body(request), creating=False)
        with self._write_lock:
            record = self._load(entity, key)
            now = self._now()
            record.update(values)
            record[entity.audit.updated] = local_text(now, self.local)
            record[entity.audit.updated_by] = self._user_id(principal)
            self.store.replace(SCOPE, entity.name, key, record, updated=sortable(now))
        return json_response(self._present(entity, record, base))

    def delete(self, entity: Entity, key: str, principal: Any) -> Response:
        with self._write_lock:
            record = self._load(entity, key)
            now = self._now()
            record[entity.audit.deleted] = 1
            record[entity.audit.updated] = local_text(now, self.local)
            record[entity.audit.updated_by] = self._user_id(principal)
            self.store.replace(SCOPE, entity.name, key, record, updated=sortable(now))
            self.store.mark_deleted(SCOPE, entity.name, key, sortable(now))
        return Response(status=204)

    def _now(self) -> datetime:
        # CRM dates have whole seconds; the store's times are kept equal to them.
        return self.clock.now().replace(microsecond=0)

    def _user_id(self, logon: Any) -> int:
        users = self.entities["users"]
        logon_field = next((c.name for c in users.table.columns if c.name.endswith("_logon")), "")
        rows = self.store.select(
            SCOPE,
            users.name,
            where=f"{field(logon_field)} COLLATE NOCASE = ?",
            params=[str(logon)],
            limit=1,
            columns="key",
        )
        return int(rows[0][0]) if rows else DEFAULT_USER_ID

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise ApiError(400, "ApplicationDiagnosis", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "ApplicationDiagnosis", "the body must be a JSON object of fields")
        return body

    def _values(self, entity: Entity, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        """The writable fields of a body, by their definition's name, checked and converted."""
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("$"):
                continue
            column = entity.columns.get(name.lower())
            if column is None:
                raise ApiError(
                    400, "ApplicationDiagnosis", f"{entity.name} has no field {name!r}", name
                )
            if column.read_only:
                continue  # maintained by the server
            values[column.name] = self._convert(column, value)
        for column in entity.table.columns:
            if not column.required_on_create:
                continue
            missing = values.get(column.name) in (None, "")
            if missing and (creating or column.name in values):
                raise ApiError(
                    400,
                    "ApplicationDiagnosis",
                    f"{column.name} is required",
                    column.name,
                )
        return values

    def _convert(self, column: Column, value: Any) -> Any:
        name, kind = column.name, column.type

        def wrong(expected: str) -> ApiError:
            return ApiError(
                400, "ApplicationDiagnosis", f"{name} must be {expected}, not {value!r}", name
            )

        if value is None:
            if not column.nullable:
                raise wrong("set")
            return None
        if kind == "TEXT":
            if not isinstance(value, str):
                raise wrong("text")
            return value
        if kind in {"INTEGER", "DECIMAL"}:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise wrong("a number")
            try:
                number = Decimal(str(value).strip())
            except InvalidOperation:
                raise wrong("a number") from None
            if not number.is_finite():
                raise wrong("a number")
            if kind == "INTEGER":
                if number != number.to_integral_value():
                    raise wrong("an integer")
                return int(number)
            return float(number)
        if kind in {"DATE", "DATETIME"}:
            if not isinstance(value, str):
                raise wrong("a date")
            try:
                instant = sdata.parse_date(value, self.local)
            except sdata.SDataError:
                raise wrong("a date like 2015-02-07T00:00:00-05:00") from None
            return local_text(instant, self.local)
        return value

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _int_arg(args: dict[str, str], name: str, default: int, *, minimum: int) -> int:
        text = args.get(name.lower())
        if text is None or text == "":
            return default
        if not _INTEGER.match(text.strip()) or int(text) < minimum:
            raise ApiError(
                400,
                "BadQueryParameter",
                f"{name} must be an integer of at least {minimum}, not {text!r}",
                name,
            )
        return int(text)

    @staticmethod
    def _not_allowed(method: str, allowed: str) -> ApiError:
        return ApiError(
            405,
            "MethodNotAllowed",
            f"{method} is not allowed here (use {allowed})",
            headers={"Allow": allowed},
        )
