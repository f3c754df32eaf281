"""Target activities: Create, Update and Delete take records in and give one result per record.

::

    create = Create(connection, "contacts")
    for result in create.run(records):      # records: dicts of column -> value
        print(result.index, result.status, result.key, result.error)

A record is a dict of the table's column names (as a query returns them) to values.
Each record is checked against the table definition (the same checks as INSERT and
UPDATE) and sent as one request; a record that fails its checks is answered
``failed`` with every problem (``error.errors``: (column, reason)) and never sent.
The run continues past failures unless ``stop_on_first_error``; the records after
the stop are answered ``skipped``. Up to ``max_concurrency`` (default: the
connection's MaxConcurrency) requests are in flight, results still in input order;
records are read lazily, so a long stream is written in constant memory.

Update takes the key column and the columns to change (only those are sent). Delete
takes the key column (other members are ignored) or a bare key. On Accounting sales
invoices and credit notes a DELETE voids a document that is not a draft: give
``void_reason`` to void it; without one, Delete deletes drafts only and answers the
others ``failed`` with the procedure to use.

Activities keep no state between runs and share nothing but the connection, whose
transport is thread-safe: several activities may run on one connection at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sagesql.activities.clients import Connectable, client_of
from sagesql.activities.results import ActivityResult
from sagesql.engine import bodies, validation
from sagesql.engine.fetch import extract
from sagesql.engine.row_writes import RowError, RowOutcome, RowRequest, send_all
from sagesql.engine.values import coerce
from sagesql.errors import DataError, Error, ProgrammingError
from sagesql.schemas.catalog import Column, Procedure, Table

VOID_REASON = "void_reason"
DRAFT = "DRAFT"


class Target:
    """The shared loop: records -> checked requests -> per-record results."""

    kind = ""  # INSERT, UPDATE or DELETE

    def __init__(
        self,
        connection: Connectable,
        table: str | Table,
        *,
        stop_on_first_error: bool = False,
        max_concurrency: int | None = None,
    ) -> None:
        self.connection = client_of(connection)
        product = self.connection.product.id
        self.table = (
            table if isinstance(table, Table) else self.connection.catalog.table(table, product)
        )
        if self.table.product != product:
            raise ProgrammingError(
                f"{self.table.name} is a {self.table.product} table, but the connection is to "
                f"{product}",
                hint="connect to that product",
            )
        self.operation = validation.operation(self.table, self.kind)
        self.stop_on_first_error = stop_on_first_error
        self.max_concurrency = max_concurrency

    @property
    def workers(self) -> int:
        chosen = self.max_concurrency or self.connection.settings.max_concurrency or 1
        return max(1, int(chosen))

    def run(self, records: Iterable[Any]) -> Iterator[ActivityResult]:
        """One result per record, in input order, as each is answered."""
        transport = self.connection.transport
        requests = (self.request(index, record) for index, record in enumerate(records))
        for outcome in send_all(
            transport,
            requests,
            workers=self.workers,
            stop_on_first_error=self.stop_on_first_error,
        ):
            yield ActivityResult.of(outcome, self.table)

    def __call__(self, records: Iterable[Any]) -> list[ActivityResult]:
        return list(self.run(records))

    # -- per record ----------------------------------------------------------------------

    def request(self, index: int, record: Any) -> RowRequest:
        raise NotImplementedError

    def _problems(self) -> validation.Problems:
        return validation.Problems(f"{self.kind.lower()} {self.table.name}")

    @staticmethod
    def invalid(index: int, key: Any, problems: validation.Problems) -> RowRequest:
        error = RowError(
            "not sent: " + "; ".join(problems.items),
            None,
            tuple(problems.fields),
            "fix the record ('sagesql schema TABLE --activity ...' describes it)",
        )
        return RowRequest(index, key=key, outcome=RowOutcome(index, "failed", key, None, error))

    def _key(self, record: Any, problems: validation.Problems) -> tuple[Any, dict[str, Any]]:
        """(the record's key, its other members); a bare value is the key itself."""
        table = self.table
        if "{key}" not in self.operation.path:
            rest = dict(record) if isinstance(record, Mapping) else {}
            return None, rest
        key_column = table.column(table.key) if table.key else None
        assert key_column is not None  # tables with a keyed operation have a key
        if isinstance(record, Mapping):
            rest = dict(record)
            name = next((n for n in rest if n.lower() == key_column.name.lower()), None)
            value = rest.pop(name) if name is not None else None
        else:
            rest, value = {}, record
        if value is None or value == "":
            problems.add(f"the key column {key_column.name} is missing", column=key_column.name)
            return None, rest
        try:
            return coerce(key_column.type, value, table.product, column=key_column.name), rest
        except DataError as exc:
            problems.add(exc.message, column=key_column.name)
            return None, rest

    def _values(
        self, record: Mapping[str, Any], problems: validation.Problems, *, creating: bool
    ) -> dict[Column, Any]:
        columns, values = validation.record_columns(self.table, record, self.kind, problems)
        return validation.convert_row(
            self.table,
            columns,
            values,
            self.connection.catalog,
            problems,
            row=None,
            creating=creating,
        )


class Create(Target):
    """Create one record per input record (POST)."""

    kind = "INSERT"

    def request(self, index: int, record: Any) -> RowRequest:
        problems = self._problems()
        if not isinstance(record, Mapping):
            problems.add(f"a record must be an object of columns, not {type(record).__name__}")
            return self.invalid(index, None, problems)
        values = self._values(record, problems, creating=True)
        if problems:
            return self.invalid(index, None, problems)
        op, table = self.operation, self.table
        sent = {c: v for c, v in values.items() if v is not None}  # None: the API's default
        return RowRequest(
            index,
            op.method,
            op.path,
            bodies.body(op, sent, table.product),
            None,
            "created",
            key_of=lambda answer: bodies.record_key(table, answer),
        )


class Update(Target):
    """Update one record per input record: its key, and the columns to change."""

    kind = "UPDATE"

    def request(self, index: int, record: Any) -> RowRequest:
        problems = self._problems()
        if not isinstance(record, Mapping):
            problems.add(f"a record must be an object of columns, not {type(record).__name__}")
            return self.invalid(index, None, problems)
        key, rest = self._key(record, problems)
        if not rest:
            problems.add("nothing to update: give the columns to change besides the key")
        values = self._values(rest, problems, creating=False)
        if problems:
            return self.invalid(index, key, problems)
        op = self.operation
        return RowRequest(
            index,
            op.method,
            bodies.path(op, key),
            bodies.body(op, values, self.table.product),
            key,
            "updated",
        )


class Delete(Target):
    """Delete one record per input record (its key); void with ``void_reason`` where Sage voids."""

    kind = "DELETE"

    def __init__(self, connection: Connectable, table: str | Table, **options: Any) -> None:
        super().__init__(connection, table, **options)
        self.void: Procedure | None = next(
            (
                p
                for p in self.table.procedures
                if str(p.request.get("method", "")).upper() == "DELETE"
                and self.table.has_column("status_id")
            ),
            None,
        )

    def request(self, index: int, record: Any) -> RowRequest:
        problems = self._problems()
        key, rest = self._key(record, problems)
        reason = rest.get(VOID_REASON)
        if reason is not None and self.void is None:
            problems.add(f"{self.table.name} records are not voided", column=VOID_REASON)
        if problems:
            return self.invalid(index, key, problems)
        op = self.operation
        path = bodies.path(op, key)
        if self.void is not None and reason:
            params = self._void_params(str(reason))
            return RowRequest(index, op.method, path, None, key, "voided", params=params)
        if self.void is not None:
            refused = self._not_a_draft(index, key)
            if refused is not None:
                return refused
        return RowRequest(index, op.method, path, None, key, "deleted")

    def _void_params(self, reason: str) -> dict[str, str]:
        """The void procedure's query parameters with the reason filled in (``void_reason``).

        Sage's definition takes the reason as a query parameter of the DELETE; no body.
        """
        assert self.void is not None
        template = self.void.request.get("query") or {VOID_REASON: "{VoidReason}"}
        return {
            str(k): reason if isinstance(v, str) and v.startswith("{") and v.endswith("}") else v
            for k, v in template.items()
        }

    def _not_a_draft(self, index: int, key: Any) -> RowRequest | None:
        """A failed request when the document is not a draft (a DELETE would void it)."""
        assert self.void is not None
        get = self.table.operations.get("get")
        if get is None:
            return None
        try:
            record = self.connection.transport.get_json(bodies.path(get, key))
        except Error as exc:
            error = RowError.of(exc)
            return RowRequest(index, key=key, outcome=RowOutcome(index, "failed", key, None, error))
        status_id = (
            extract(record, self.table.column("status_id").path)
            if isinstance(record, Mapping)
            else None
        )
        if status_id == DRAFT:
            return None
        error = RowError(
            f"not sent: {self.table.name} {key} is not a draft ({status_id or 'no status'}); "
            "Sage voids such a document, and a void needs a reason",
            None,
            ((VOID_REASON, "required to void a document that is not a draft"),),
            f"give void_reason in the record, or EXEC {self.void.name}",
        )
        return RowRequest(index, key=key, outcome=RowOutcome(index, "failed", key, None, error))
