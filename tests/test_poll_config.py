"""Poller configuration: the native TOML/JSON file, the platforms' instance JSON, and checks.

Everything here is read and checked without a request: wrong names are reported at
start with where they were configured and the closest matches.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sagesql.activities.polling import loading
from sagesql.activities.polling.instance import render, substitute
from sagesql.activities.polling.javadate import compile_pattern
from sagesql.activities.polling.tables import resolve
from sagesql.activities.polling.timeparse import duration
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import default_catalog

EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "instance-variants"
PUBLISHED = Path(__file__).resolve().parent.parent / "activities" / "polling" / "examples"
WHEN = datetime(2026, 4, 5, 6, 7, 8, 123000, tzinfo=timezone.utc)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _instance(tmp_path: Path, entries: dict, element: str = "sage200", **conf: str) -> Path:
    data = {
        "id": 7,
        "name": "inst",
        "element": {"key": element},
        "configuration": {
            "event.notification.enabled": "true",
            "event.notification.callback.url": "https://hooks.example.com/x",
            "event.poller.configuration": json.dumps(entries),
            **conf,
        },
    }
    return _write(tmp_path, "instance.json", json.dumps(data))


def _resolve(path: Path, product: str) -> list:
    return resolve(loading.load(path), default_catalog(), product)


def test_native_toml(tmp_path) -> None:
    path = _write(
        tmp_path,
        "acme.toml",
        """
name = "acme"
interval = "30s"
lookback = "5m"
delay = "2s"
tolerance = "3s"
start = "2026-01-01T00:00:00Z"

[[tables]]
table = "accounts"
filter = "comp_type = 'Customer'"
deletes = "compare"
compare_every = "1h"

[[tables]]
table = "opportunity"
name = "deals"
lookback = "10m"

[[sinks]]
type = "webhook"
url = "https://hooks.example.com/crm"
username = "u"
password = "p"
signature_key = "k"
headers = { "X-Env" = "test" }

[[sinks]]
type = "jsonl"
path = "out/events.jsonl"

[delivery]
give_up_after = "1h"
events_per_message = 5
""",
    )
    config = loading.load(path)
    assert config.instance_id == config.instance_name == "acme"
    assert config.interval == timedelta(seconds=30) and config.lookback == timedelta(minutes=5)
    assert config.start == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert config.state == tmp_path / "acme.poll.sqlite"
    assert config.sinks[1].path == tmp_path / "out" / "events.jsonl"
    assert "password='p'" not in repr(config.sinks[0])
    assert config.delivery.events_per_message == 5
    specs = resolve(config, default_catalog(), "sage_crm")
    assert [s.table.name for s in specs] == ["company", "opportunity"]
    assert specs[1].name == "deals" and specs[1].lookback == timedelta(minutes=10)
    assert specs[0].filter == "(comp_type = 'Customer')"
    assert specs[0].compare_every == timedelta(hours=1) and specs[0].deletes == "compare"


def test_native_json_of_the_same_shape(tmp_path) -> None:
    path = _write(
        tmp_path,
        "p.json",
        json.dumps({"tables": ["customers"], "sinks": [{"type": "stdout"}], "interval": "1h"}),
    )
    config = loading.load(path)
    assert config.tables[0].table == "customers" and config.sinks[0].kind == "stdout"
    assert resolve(config, default_catalog(), "sage_accounting")[0].deletes == "api"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tables = ["customers"]\nintervall = "1m"\n[[sinks]]\ntype="stdout"', "'intervall'"),
        ('tables = ["customers"]\ninterval = "15"\n[[sinks]]\ntype="stdout"', "no unit"),
        ('tables = ["customers"]', "no sinks"),
        ('tables = []\n[[sinks]]\ntype="stdout"', "no tables"),
        ('tables = ["customers"]\n[[sinks]]\ntype="ftp"', "webhook, jsonl, stdout"),
        ('tables = ["customers"]\n[[sinks]]\ntype="webhook"', "needs url"),
        (
            'tables = ["customers"]\n[[sinks]]\ntype="stdout"\n[delivery]\nevents_per_message=11',
            "at most 10",
        ),
        ('tables = ["a", "a"]\n[[sinks]]\ntype="stdout"', "a second time"),
    ],
)
def test_native_mistakes_are_named(tmp_path, text, message) -> None:
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigurationError) as info:
        loading.load(path)
    assert message in str(info.value)


def test_close_matches_for_unknown_settings(tmp_path) -> None:
    path = _write(tmp_path, "bad.toml", 'tables = ["x"]\nlookbak = "1m"\n[[sinks]]\ntype="stdout"')
    with pytest.raises(ConfigurationError, match="did you mean lookback"):
        loading.load(path)


def test_durations() -> None:
    assert duration("1h30m", what="x") == timedelta(minutes=90)
    assert duration("500ms", what="x") == timedelta(milliseconds=500)
    assert duration("15", what="x", bare_unit="m") == timedelta(minutes=15)
    with pytest.raises(ConfigurationError):
        duration("fifteen minutes", what="x")


def test_java_date_patterns() -> None:
    assert compile_pattern("yyyy-MM-dd'T'HH:mm:ss'Z'").format(WHEN) == "2026-04-05T06:07:08Z"
    assert compile_pattern("yyyy-MM-dd'T'HH:mm:ss.SSSXXX").format(WHEN) == (
        "2026-04-05T06:07:08.123Z"
    )
    assert compile_pattern("EEE, d MMM yyyy hh:mm a Z").format(WHEN) == (
        "Sun, 5 Apr 2026 06:07 AM +0000"
    )
    assert compile_pattern("dd/MM/yy 'at' H''mm").format(WHEN) == "05/04/26 at 6'07"
    with pytest.raises(ConfigurationError, match="unknown pattern letter 'Q'"):
        compile_pattern("yyyy-QQ")
    with pytest.raises(ConfigurationError, match="not closed"):
        compile_pattern("yyyy'T")


def test_placeholders_are_found_and_rendered() -> None:
    clause = "updated_at >= '${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}' and name like 'A%'"
    sql, found = substitute(clause, "here")
    assert sql == "updated_at >= :since and name like 'A%'"
    assert render(found[0], WHEN, None) == "2026-04-05T06:07:08Z"
    assert render("${epoch}", WHEN, None) == str(int(WHEN.timestamp() * 1000))
    assert render("${date:HH:mm}", WHEN, "Europe/Paris") == "08:07"
    with pytest.raises(ConfigurationError, match="unknown placeholder"):
        substitute("x >= '${lastPoll}'", "here")


def test_instance_json_keys(tmp_path) -> None:
    path = _instance(
        tmp_path,
        {"customers": {"url": "/hubs/finance/customers?where=date_time_updated >= ${epoch}"}},
        **{
            "event.notification.basic.username": "bob",
            "event.notification.basic.password": "pw",
            "signature.secret": "sig",
            "event.poller.refresh_interval": "3",
        },
    )
    config = loading.load(path)
    (sink,) = config.sinks
    assert (sink.url, sink.username, sink.password, sink.signature_key) == (
        "https://hooks.example.com/x",
        "bob",
        "pw",
        "sig",
    )
    assert config.interval == timedelta(minutes=3)
    assert config.instance_id == "7" and config.product == "sage_200" and config.platform
    (spec,) = resolve(config, default_catalog(), "sage_200")
    assert spec.updated == "date_time_updated" and spec.filter is None


def test_the_examples_resolve_for_their_products() -> None:
    expected = {
        "sage_accounting": {"customers": "customers"},
        "sage_200": {
            "customers": "customers",
            "payments": "sales_posted_transactions",
            "invoices": "sales_posted_transactions",
            "products": "products",
            "warehouses": "warehouses",
        },
        "sage_crm": {
            "accounts": "company",
            "contacts": "person",
            "leads": "lead",
            "opportunities": "opportunity",
            "users": "users",
        },
    }
    for product, tables in expected.items():
        specs = _resolve(EXAMPLES / f"{product}.instance.json", product)
        assert {s.name: s.table.name for s in specs} == tables
    crm = {s.name: s for s in _resolve(EXAMPLES / "sage_crm.instance.json", "sage_crm")}
    assert crm["leads"].filter == "((lead_stage <> 'No Interest'))"
    assert crm["accounts"].date_timezone == "Europe/London"


@pytest.mark.parametrize(
    ("entries", "product", "message"),
    [
        (
            {
                "customers": {
                    "url": "/hubs/finance/customers?where=date_time_updatd >= '${gmtDate:yyyy}'"
                }
            },
            "sage_200",
            "did you mean date_time_updated",
        ),
        (
            {
                "customers": {
                    "url": "/hubs/finance/customers?where=date_time_updated >= "
                    "'${gmtDate:yyyy}' and nmae = 'x'"
                }
            },
            "sage_200",
            "nmae",
        ),
        (
            {"customers": {"url": "/hubs/finance/customerz"}},
            "sage_200",
            "did you mean customers",
        ),
        (
            {"customers": {"url": "/hubs/finance/customers", "idField": "identifier"}},
            "sage_200",
            "idField 'identifier' is not a column of customers",
        ),
        (
            {
                "customers": {
                    "url": "/hubs/finance/customers",
                    "datesConfiguration": {"updatedDateField": "changed"},
                }
            },
            "sage_200",
            "the updated-date field 'changed'",
        ),
        (
            {
                "customers": {
                    "url": "/hubs/finance/customers?where=date_time_updated <= '${gmtDate:yyyy}'"
                }
            },
            "sage_200",
            "is not '<updated column> >= ${...}'",
        ),
    ],
)
def test_instance_mistakes_are_reported_clearly(tmp_path, entries, product, message) -> None:
    element = {"sage_200": "sage200", "sage_crm": "sagecrm"}[product]
    path = _instance(tmp_path, entries, element=element)
    with pytest.raises(ConfigurationError) as info:
        _resolve(path, product)
    text = str(info.value)
    assert message in text, text
    assert "event.poller.configuration." in text


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"event.notification.enabled": "false"}, "sends no events"),
        ({"event.notification.callback.url": ""}, "callback.url"),
        ({"event.vendor.type": "webhook"}, "expects webhooks"),
        ({"event.poller.configuration": "{not json"}, "not valid JSON"),
    ],
)
def test_instance_notification_settings_are_checked(tmp_path, conf, message) -> None:
    path = _instance(tmp_path, {"customers": {"url": "/hubs/finance/customers"}}, **conf)
    with pytest.raises(ConfigurationError, match=message):
        loading.load(path)


def test_an_unknown_element_is_refused(tmp_path) -> None:
    path = _instance(tmp_path, {"x": {"url": "/hubs/crm/x"}}, element="salesforce")
    with pytest.raises(ConfigurationError, match="not a Sage element"):
        loading.load(path)


def test_the_readme_example_is_a_valid_configuration(tmp_path) -> None:
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Polling for changes", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    config = loading.load(_write(tmp_path, "acme.toml", block.group(1)))
    specs = resolve(config, default_catalog(), "sage_200")
    assert [s.table.name for s in specs] == ["customers", "products", "sales_posted_transactions"]
    assert config.sinks[0].signature_key == "..."
