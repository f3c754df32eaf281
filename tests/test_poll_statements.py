"""The poller's statements: built as syntax trees, planned by the planner's own answers, and
tombstones read through the engine's fetch path. No network: planning needs none, and the
fetch path is given a transport that records what it was asked."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from sagesql.activities.polling.config import PollConfig, SinkConfig, TableConfig
from sagesql.activities.polling.tables import planning_connection, resolve
from sagesql.activities.polling.window import Window
from sagesql.connector.paging import Paginator
from sagesql.engine import fetch
from sagesql.engine.pipeline import prepare
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import default_catalog

WINDOW = "SELECT * FROM {t} WHERE {u} >= '2026-01-01T00:00:00Z' ORDER BY {u}, {k}"


def _config(tmp_path: Any, *entries: TableConfig) -> PollConfig:
    return PollConfig(
        source=None,
        instance_id="t",
        instance_name="t",
        state=tmp_path / "state.sqlite",
        tables=entries,
        sinks=(SinkConfig(kind="stdout", name="stdout"),),
    )


@pytest.mark.parametrize(
    ("product", "table", "updated", "key", "pushed"),
    [
        ("sage_200", "customers", "date_time_updated", "id", True),
        # CRM's window is applied locally (no documented date literal for where=).
        ("sage_crm", "company", "comp_updateddate", "comp_companyid", False),
        ("sage_accounting", "contacts", "updated_at", "id", False),  # no sort by key
    ],
)
def test_the_planner_says_whether_limit_reaches_the_api(
    product: str, table: str, updated: str, key: str, pushed: bool
) -> None:
    connection = planning_connection(default_catalog(), product)
    sql = WINDOW.format(t=table, u=updated, k=key)
    assert prepare(connection, sql).pushes_limit is pushed  # with no LIMIT to push
    limited = prepare(connection, sql + " LIMIT 7")
    assert limited.pushes_limit is pushed
    assert limited.scans[0].limit == (7 if pushed else None)


def test_limit_never_reaches_the_api_past_a_join() -> None:
    connection = planning_connection(default_catalog(), "sage_200")
    sql = "SELECT * FROM customers c JOIN suppliers s ON s.id = c.id ORDER BY c.id LIMIT 3"
    assert not prepare(connection, sql).pushes_limit


def test_the_window_is_names_and_parameters(tmp_path: Any) -> None:
    entry = TableConfig(origin="t", name="customers", table="customers", filter="name LIKE 'N%'")
    (spec,) = resolve(_config(tmp_path, entry), default_catalog(), "sage_200")
    window = Window(spec, 50, default_catalog())
    assert window.keyset == (True, True)  # LIKE is not exact: the filter is a result column
    query = window.updated("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", ("2026-01-01", 9))
    assert query.sql == (
        'SELECT *, "sagesql_record", '
        "CASE WHEN ((name LIKE 'N%')) THEN 1 ELSE 0 END AS sagesql_poll_match "
        'FROM "customers" WHERE "date_time_updated" >= :lower AND "date_time_updated" <= :upper'
        ' AND ("date_time_updated" > :cu OR ("date_time_updated" = :cu AND "id" > :ck))'
        ' ORDER BY "date_time_updated", "id" LIMIT :n'
    )
    assert query.params == {
        "lower": "2026-01-01T00:00:00Z",
        "upper": "2026-01-02T00:00:00Z",
        "cu": "2026-01-01",
        "ck": 9,
        "n": 50,
    }
    scan = window.scan(9, keys_only=True)
    assert scan.sql == (
        "SELECT \"id\", CASE WHEN ((name LIKE 'N%')) THEN 1 ELSE 0 END AS sagesql_poll_match "
        'FROM "customers" WHERE "id" > :ck ORDER BY "id" LIMIT :n'
    )
    assert window.first_key().sql == 'SELECT "id" FROM "customers" LIMIT 1'


@pytest.mark.parametrize(
    "condition", ["name = 'x') OR (1 = 1", "name = 'x'; DELETE FROM customers", "name ="]
)
def test_a_filter_is_one_condition(tmp_path: Any, condition: str) -> None:
    entry = TableConfig(origin="t", name="customers", table="customers", filter=condition)
    with pytest.raises(ConfigurationError, match="SQL syntax error"):
        resolve(_config(tmp_path, entry), default_catalog(), "sage_200")


class _Recorder:
    """A transport that answers every paged list with the given records."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.answer = records
        self.asked: list[tuple[str, dict[str, Any], int, int | None, bool]] = []

    def records(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        paginator: Paginator,
        *,
        page_size: int,
        limit: int | None = None,
        parallel: bool = False,
        offset: int = 0,
    ) -> Iterator[dict[str, Any]]:
        self.asked.append((path, dict(params or {}), page_size, limit, parallel))
        yield from self.answer


def test_tombstones_are_read_through_the_fetch_path() -> None:
    table = default_catalog().table("customers", "sage_accounting")
    tombstone = {"id": "c1", "deleted_at": "2026-01-01T10:00:00Z", "displayed_as": "C"}
    transport = _Recorder([tombstone])
    rows = list(
        fetch.deleted(
            table, ["id", "deleted_at"], transport, "2026-01-01T09:00:00Z", page_size=5000
        )
    )
    assert transport.asked == [
        (
            "/contacts",
            {"contact_type_id": "CUSTOMER", "deleted_since": "2026-01-01T09:00:00Z"},
            200,  # at most the table's page size
            None,
            False,
        )
    ]
    ((row, record),) = rows
    assert record == tombstone
    assert row[0] == "c1" and row[1] is not None
