"""The Execute activity: a stored procedure run once per input record of parameters.

::

    void = Execute(connection, "VoidSalesInvoice")
    for result in void.run([{"Id": "abc", "VoidReason": "raised twice"}]):
        print(result.status, result.record)      # ok {'success': True}

Each record maps parameter names (any case, without ``@``) to values. Parameters are
checked as ``EXEC`` checks them; a record with a problem is answered ``failed`` and
not run. The call is made through ``EXEC`` (engine/procedures.py), built as a syntax
tree, so a value cannot change the statement. Records run one after the other:
procedures are actions (release, void, reissue, logins) whose order may matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlglot import exp

from sagesql.activities.results import ActivityResult
from sagesql.engine import procedures
from sagesql.engine.row_writes import RowError, classify
from sagesql.engine.statement import literal
from sagesql.errors import AuthError, Error, InterfaceError


class Execute:
    """Run one procedure per record of parameters; one result per record."""

    def __init__(self, connection: Any, procedure: str, *, stop_on_first_error: bool = False):
        self.connection = connection
        self.table, self.procedure = procedures.find(connection, procedure)
        self.stop_on_first_error = stop_on_first_error

    def statement(self, record: Mapping[str, Any]) -> str:
        """The EXEC statement of one record (built as a tree; values are literals)."""
        tree = exp.Execute(
            this=exp.Table(this=exp.to_identifier(self.procedure.name)),
            expressions=[
                exp.EQ(
                    this=exp.Parameter(this=exp.var(str(name).lstrip("@"))), expression=literal(v)
                )
                for name, v in record.items()
            ],
        )
        return tree.sql("tsql")

    def run(self, records: Iterable[Any]) -> Iterator[ActivityResult]:
        queue = iter(records)
        stopped: RowError | None = None
        for index, record in enumerate(queue):
            if stopped is not None:
                yield ActivityResult(
                    index, "skipped", error=RowError(f"not sent: {stopped.message}")
                )
                continue
            result = self.one(index, record)
            yield result
            fatal = result.error is not None and result.error.status in (401, 403)
            if not result.ok and (self.stop_on_first_error or fatal):
                stopped = result.error

    def __call__(self, records: Iterable[Any]) -> list[ActivityResult]:
        return list(self.run(records))

    def one(self, index: int, record: Any) -> ActivityResult:
        if not isinstance(record, Mapping):
            error = RowError(
                f"not sent: a record must be an object of parameters, not {type(record).__name__}"
            )
            return ActivityResult(index, "failed", error=error)
        names = {p.name.lower() for p in self.procedure.parameters}
        unknown = [n for n in record if str(n).lstrip("@").lower() not in names]
        try:
            # The same checks as EXEC, before anything is sent (they name every problem).
            procedures.check_arguments(
                self.procedure,
                {str(k).lstrip("@"): v for k, v in record.items()},
                self.connection.product.id,
            )
            answer = procedures.run(self.connection, self.statement(record))
        except Error as exc:
            status = "failed" if unknown or isinstance(exc, AuthError | InterfaceError) else None
            return ActivityResult(
                index,
                status or classify(exc, str(self.procedure.request.get("method", "POST"))),
                error=RowError.of(exc),
            )
        try:
            row = next(iter(answer.rows), None)
        finally:
            answer.close()
        values = dict(zip([c.name for c in answer.columns], row or (), strict=False))
        return ActivityResult(index, "ok", None, values, None, values)
