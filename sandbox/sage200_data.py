"""Sage 200 demo data: one site with three companies, consistent across tables, from a seed.

Every company (the store scope is its id) holds its own data. The core of a company
is written by hand so that it hangs together: customers and suppliers (``rows`` each)
with balances equal to what their posted transactions leave outstanding; products
in product groups, held in warehouses; sales and purchase orders whose lines name
real products and whose totals are the sums of the lines; posted sales, purchase
and bank transactions of real customers, suppliers and banks; a small chart of
nominal codes, tax codes, currencies, departments and cost centres. Every other
list resource gets a handful of records built from its table definition's columns.

Records carry every field of the published record schema. Values are typed as Sage
200 writes them: integer ids, numbers for money, ``2024-01-31T09:15:00.123Z`` for
date-times (UTC, milliseconds). Links to other records (``customer``, ``currency``...)
are null: the API fills them with ``$expand``. Nothing depends on the day it runs:
the same seed gives the same records, ids and times.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from sagesql.sandbox import fake
from sagesql.sandbox.clock import sortable
from sagesql.sandbox.odata import datetime_text
from sagesql.sandbox.records import set_path
from sagesql.schemas.catalog import Catalog, Column, Table, default_catalog

PRODUCT = "sage_200"
SITES_SCOPE = "_sites"  # the store scope of GET /sites, which no company owns
KEY_FIELD = "_key"  # the store key of records of keyless views (stripped from answers)
GENERIC_ROWS = 5


@dataclass(frozen=True)
class Company:
    id: int
    name: str


COMPANIES = (
    Company(1, "Demo Trading Ltd"),
    Company(2, "Demo Manufacturing Ltd"),
    # The company the integration platforms' published Sage 200 instance names.
    Company(3, "Cloud-Elements Demodata"),
)
SITE_NAME = "Sandbox Site"
SITE_SHORT_NAME = "SANDBOX"

# Small fixed tables: (id, ...) rows.
CURRENCIES = [
    (1, "£", "Pound Sterling", 1.0, "GBP"),
    (2, "€", "Euro", 1.1712, "EUR"),
    (3, "$", "US Dollar", 1.2705, "USD"),
]
TAX_CODES = [  # id, code, name, rate
    (1, 0, "Zero rated", 0.0),
    (2, 1, "Standard rated", 20.0),
    (3, 2, "Exempt", 0.0),
    (4, 5, "Reduced rate", 5.0),
    (5, 9, "Outside the scope of VAT", 0.0),
]
STANDARD_TAX = 2
NOMINAL_CODES = [  # reference, name, account type
    ("0010", "Freehold Property", "NominalAccountTypeBalanceSheet"),
    ("0030", "Office Equipment", "NominalAccountTypeBalanceSheet"),
    ("1001", "Stock", "NominalAccountTypeBalanceSheet"),
    ("1100", "Debtors Control Account", "NominalAccountTypeBalanceSheet"),
    ("1200", "Bank Current Account", "NominalAccountTypeBalanceSheet"),
    ("1210", "Bank Deposit Account", "NominalAccountTypeBalanceSheet"),
    ("1230", "Petty Cash", "NominalAccountTypeBalanceSheet"),
    ("2100", "Creditors Control Account", "NominalAccountTypeBalanceSheet"),
    ("2200", "Sales Tax Control Account", "NominalAccountTypeBalanceSheet"),
    ("2201", "Purchase Tax Control Account", "NominalAccountTypeBalanceSheet"),
    ("3200", "Profit and Loss Account", "NominalAccountTypeBalanceSheet"),
    ("4000", "Sales Type A", "NominalAccountTypeProfitAndLoss"),
    ("4010", "Sales Type B", "NominalAccountTypeProfitAndLoss"),
    ("5000", "Materials Purchased", "NominalAccountTypeProfitAndLoss"),
    ("5200", "Opening Stock", "NominalAccountTypeProfitAndLoss"),
    ("7100", "Rent", "NominalAccountTypeProfitAndLoss"),
    ("7200", "Electricity", "NominalAccountTypeProfitAndLoss"),
    ("7500", "Office Stationery", "NominalAccountTypeProfitAndLoss"),
    ("7900", "Bank Charges", "NominalAccountTypeProfitAndLoss"),
    ("8100", "Bad Debt Write Off", "NominalAccountTypeProfitAndLoss"),
]
DEPARTMENTS = [
    ("ADM", "Administration"),
    ("SAL", "Sales"),
    ("PRD", "Production"),
    ("WHS", "Stores"),
]
COST_CENTRES = [("LON", "London"), ("MAN", "Manchester"), ("LDS", "Leeds"), ("BRS", "Bristol")]
BANKS = [  # code, description, sort code, account type
    ("1200", "Bank Current Account", "40-11-62", "BankAccountTypeCurrent"),
    ("1210", "Bank Deposit Account", "40-11-62", "BankAccountTypeDeposit"),
    ("1230", "Petty Cash", "", "BankAccountTypePettyCash"),
]
WAREHOUSES = ["Home", "Manchester DC", "Leeds Store"]
PRODUCT_GROUPS = [
    ("FIX", "Fixings and Fasteners"),
    ("ELEC", "Electrical"),
    ("PLUMB", "Plumbing"),
    ("TOOL", "Tools"),
    ("MISC", "Miscellaneous"),
]
USERS = ["MANAGER", "j.smith", "a.patel", "m.kowalski", "s.obrien"]

# Posted transaction types (trader_transaction_type) and the sign of their value on
# the account balance.
INVOICE = "TradingAccountEntryTypeInvoice"
CREDIT_NOTE = "TradingAccountEntryTypeCreditNote"
SALES_RECEIPT = "TradingAccountEntryTypePurchasePaymentSalesReceipt"  # also purchase payment
SALES_PAYMENT = "TradingAccountEntryTypePurchaseReceiptSalesPayment"  # also purchase receipt
SIGN = {INVOICE: 1, CREDIT_NOTE: -1, SALES_RECEIPT: -1, SALES_PAYMENT: 1}

# Integer fields that name a core record, and how many of those there are.
REFERENCE_COUNTS: dict[str, Callable[[CompanyData], int]] = {}


def ms(dt: datetime) -> str:
    return datetime_text(dt)


# Midnights of the demo period, for date fields nobody cares about.
DAYS = [ms(fake.DATA_START + timedelta(days=d)) for d in range(600)]


def is_collection(column: Column) -> bool:
    """JSON columns hold arrays (plural names: lines, memos) or links (customer, currency)."""
    return column.path[-1].endswith("s")


def blank_value(column: Column) -> Any:
    """What a field holds when nobody set it (records created through the API)."""
    kind = column.type
    if kind == "JSON":
        return [] if is_collection(column) else None
    if kind == "TEXT":
        return ""
    if kind == "BOOLEAN":
        return False
    if kind == "DECIMAL":
        return 0.0
    if kind == "INTEGER":
        return None if column.name.endswith("_id") or column.name == "id" else 0
    return None


def blank_record(table: Table) -> dict[str, Any]:
    return fake.nest({c.path: blank_value(c) for c in table.columns})


def stamps(rng: random.Random, n: int) -> list[tuple[datetime, datetime]]:
    """(created, updated) for n records in id order: creation times rise with the id, a
    share of records share a second (or a whole time stamp), many were edited later."""
    out: list[tuple[datetime, datetime]] = []
    previous: datetime | None = None
    for second in fake.spread_times(rng, n):
        if previous is not None and second == previous.replace(microsecond=0):
            created = previous  # the same instant: a bulk import
        else:
            created = second + timedelta(milliseconds=rng.randrange(1000))
        previous = created
        roll = rng.random()
        if roll < 0.4:
            updated = created
        elif roll < 0.5 and out and out[-1][1] >= created:
            updated = out[-1][1]  # a bulk edit stamps several records alike
        else:
            span = int((fake.DATA_END - created).total_seconds())
            updated = created + timedelta(
                seconds=rng.randrange(max(span, 1)), milliseconds=rng.randrange(1000)
            )
            updated = min(updated, fake.DATA_END)
        out.append((created, updated))
    return out


def money(rng: random.Random, low: float, high: float) -> float:
    return float(fake.money(rng, low, high))


def r2(value: float) -> float:
    return round(value + 0.0, 2)


class CompanyData:
    """The demo data of one company: facts shared by tables, and each table's records."""

    def __init__(self, demo: Demo, scope: str) -> None:
        self.demo = demo
        self.scope = scope
        self.seed: int = demo.seed
        self.rows: int = demo.rows

    def rng(self, *names: str) -> random.Random:
        return fake.rng_for(self.seed, "sage_200", self.scope, *names)

    def table(self, name: str) -> Table:
        return self.demo.catalog.table(name, PRODUCT)

    # -- building records ----------------------------------------------------------------

    def fill(
        self, table: Table, rng: random.Random, index: int, fixed: dict[str, Any]
    ) -> dict[str, Any]:
        """A record with every column of the table: ``fixed`` values, the rest made up."""
        values = dict(fixed)
        for name, kind, limit in self._plan(table):
            if name in values:
                continue
            if kind == "money":
                values[name] = float(rng.randint(0, limit)) / 100
            elif kind == "date":
                values[name] = DAYS[rng.randrange(len(DAYS))]
            elif kind == "ref":
                values[name] = rng.randint(1, limit) if limit else None
            else:
                values[name] = [] if kind == "list" else None
        return fake.record_from_columns(table, rng, index, fixed=values, plausible=True)

    def _plan(self, table: Table) -> list[tuple[str, str, int]]:
        """How fill makes the columns it types itself: (name, kind, limit), once per table."""
        plan = self.demo.plans.get(table.name)
        if plan is None:
            plan = []
            for column in table.columns:
                name = column.name
                if column.type == "DECIMAL":
                    plan.append((name, "money", 2000 if "percent" in name else 50000))
                elif column.type == "JSON":
                    plan.append((name, "list" if is_collection(column) else "link", 0))
                elif column.type in ("DATETIME", "DATE"):
                    plan.append((name, "date", 0))
                elif column.type == "INTEGER" and name.endswith("_id"):
                    plan.append((name, "ref", self.reference_count(name)))
            self.demo.plans[table.name] = plan
        return plan

    def reference_count(self, name: str) -> int:
        """How many records a field that names one (customer_id...) can point at."""
        for suffix, count in REFERENCE_COUNTS.items():
            if name == suffix or name.endswith("_" + suffix):
                return count(self)
        return GENERIC_ROWS

    def stamped(
        self,
        table: Table,
        record: dict[str, Any],
        created: datetime,
        updated: datetime,
    ) -> dict[str, Any]:
        """Set the record's time stamps and the store's meta fields."""
        for column in table.columns:
            if column.path[-1] == "date_time_created":
                set_path(record, column.path, ms(created))
            elif column.path[-1] == "date_time_updated":
                set_path(record, column.path, ms(updated))
        record["_created"], record["_updated"] = sortable(created), sortable(updated)
        return record

    def generic(self, table: Table) -> Iterator[dict[str, Any]]:
        """A handful of records for any list resource, from its columns."""
        rng = self.rng(table.name)
        count = 1 if table.paging.style == "none" else GENERIC_ROWS
        for i, (created, updated) in enumerate(stamps(rng, count), start=1):
            fixed: dict[str, Any] = {"id": i} if table.key else {}
            record = self.fill(table, rng, i, fixed)
            if not table.key:
                record[KEY_FIELD] = str(i)
            yield self.stamped(table, record, created, updated)

    def made(
        self, name: str, facts: Iterable[tuple[int, dict[str, Any]]]
    ) -> Iterator[dict[str, Any]]:
        """Records of a core table from (id, hand-written fields), in id order."""
        table = self.table(name)
        rng = self.rng(name)
        listed = list(facts)
        for (record_id, fixed), (created, updated) in zip(
            listed, stamps(self.rng(name, "times"), len(listed)), strict=True
        ):
            record = self.fill(table, rng, record_id, {"id": record_id, **fixed})
            yield self.stamped(table, record, created, updated)

    # -- facts ---------------------------------------------------------------------------

    @cached_property
    def customers(self) -> list[dict[str, Any]]:
        return self._traders("customer", "C")

    @cached_property
    def suppliers(self) -> list[dict[str, Any]]:
        return self._traders("supplier", "S")

    def _traders(self, kind: str, letter: str) -> list[dict[str, Any]]:
        rng = self.rng(kind + "-facts")
        out = []
        for i in range(1, self.rows + 1):
            name = fake.company(rng)
            letters = "".join(ch for ch in name.upper() if "A" <= ch <= "Z")[:4]
            reference = f"{letters}{i:04d}" if i < 10_000 else f"{letter}{i:07d}"
            first, last = fake.person(rng)
            out.append(
                {
                    "id": i,
                    "reference": reference,
                    "name": name,
                    "contact": f"{first} {last}",
                    "email": fake.email(first, last, name, rng),
                    "address": fake.address(rng),
                    "credit_limit": float(rng.choice([0, 1000, 2500, 5000, 10000, 25000])),
                    "on_hold": rng.random() < 0.05,
                    "currency_id": 1 if rng.random() < 0.85 else rng.choice([2, 3]),
                    "terms": rng.choice([14, 30, 30, 30, 60]),
                    "phone": fake.phone(rng),
                    "vat": f"GB{rng.randint(100_000_000, 999_999_999)}",
                }
            )
        return out

    @cached_property
    def products(self) -> list[dict[str, Any]]:
        rng = self.rng("product-facts")
        out = []
        for i in range(1, self.rows + 1):
            name = fake.product_name(rng)
            cost = money(rng, 0.5, 250)
            out.append(
                {
                    "id": i,
                    "code": "".join(w[:4].upper() for w in name.split())[:10] + f"{i:05d}",
                    "name": name,
                    "group_id": rng.randint(1, len(PRODUCT_GROUPS)),
                    "cost": cost,
                    "price": r2(cost * rng.choice([1.25, 1.4, 1.6, 2.0])),
                    "tax_code_id": STANDARD_TAX if rng.random() < 0.9 else 1,
                }
            )
        return out

    @cached_property
    def holdings(self) -> list[dict[str, Any]]:
        """Where each product is stocked: its home warehouse, and sometimes one more."""
        rng = self.rng("holding-facts")
        out: list[dict[str, Any]] = []
        for product in self.products:
            places = [1] + ([rng.randint(2, len(WAREHOUSES))] if rng.random() < 0.5 else [])
            for warehouse_id in places:
                out.append(
                    {
                        "id": len(out) + 1,
                        "product_id": product["id"],
                        "warehouse_id": warehouse_id,
                        "in_stock": float(rng.randint(0, 500)),
                        "allocated": float(rng.randint(0, 20)),
                        "on_order": float(rng.choice([0, 0, 50, 100])),
                    }
                )
        return out

    @cached_property
    def sales_postings(self) -> list[dict[str, Any]]:
        return self._postings("sales", self.customers)

    @cached_property
    def purchase_postings(self) -> list[dict[str, Any]]:
        return self._postings("purchase", self.suppliers)

    def _postings(self, ledger: str, traders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Posted transactions: invoices, some credit notes, receipts (sales) or payments
        (purchases) that settle earlier invoices in full or in part."""
        rng = self.rng(ledger + "-postings")
        times = stamps(self.rng(ledger + "-postings", "times"), 2 * self.rows)
        prefix = "SI" if ledger == "sales" else "PI"
        out: list[dict[str, Any]] = []
        for i, (created, _updated) in enumerate(times, start=1):
            trader = rng.choice(traders)
            roll = rng.random()
            if roll < 0.7 or not out:
                kind, goods = INVOICE, money(rng, 20, 4000)
            elif roll < 0.8:
                kind, goods = CREDIT_NOTE, money(rng, 10, 300)
            else:
                kind, goods = SALES_RECEIPT, money(rng, 50, 3000)
            tax = r2(goods * 0.2) if kind != SALES_RECEIPT else 0.0
            gross = r2(goods + tax)
            allocated = 0.0
            if kind == INVOICE:
                allocated = rng.choice([0.0, 0.0, gross, r2(gross / 2)])
            elif kind == SALES_RECEIPT:
                allocated = rng.choice([gross, gross, 0.0])
            out.append(
                {
                    "id": i,
                    "urn": 3 * i + (0 if ledger == "sales" else 1),
                    "trader_id": trader["id"],
                    "kind": kind,
                    "reference": f"{prefix}{i:06d}"
                    if kind != SALES_RECEIPT
                    else f"{'REC' if ledger == 'sales' else 'PAY'}{i:06d}",
                    "date": created.replace(hour=0, minute=0, second=0, microsecond=0),
                    "goods": goods,
                    "tax": tax,
                    "gross": gross,
                    "allocated": allocated,
                    "terms": trader["terms"],
                }
            )
        return out

    def balances(self, postings: list[dict[str, Any]]) -> dict[int, float]:
        """What each trader owes (sales) or is owed (purchases): outstanding, signed."""
        totals: dict[int, float] = {}
        for p in postings:
            outstanding = (p["gross"] - p["allocated"]) * SIGN[p["kind"]]
            totals[p["trader_id"]] = r2(totals.get(p["trader_id"], 0.0) + outstanding)
        return totals

    # -- core tables ---------------------------------------------------------------------

    def records(self, resource: str) -> Iterable[dict[str, Any]]:
        maker = getattr(self, "make_" + resource, None)
        if maker is not None:
            return maker()
        return self.generic(self.table(resource))

    def make_currencies(self) -> Iterable[dict[str, Any]]:
        return self.made(
            "currencies",
            (
                (
                    cid,
                    {
                        "symbol": symbol,
                        "name": name,
                        "core_currency_rate": rate,
                        "euro_currency_rate": r2(rate / CURRENCIES[1][3]),
                        "is_base_currency": cid == 1,
                        "is_euro_currency": code == "EUR",
                        "use_for_new_accounts": True,
                        "exchange_rate_type": "ExchangeRateSingle",
                        "currency_iso_code_id": cid,
                    },
                )
                for cid, symbol, name, rate, code in CURRENCIES
            ),
        )

    def make_tax_codes(self) -> Iterable[dict[str, Any]]:
        return self.made(
            "tax_codes",
            (
                (
                    tid,
                    {
                        "code": code,
                        "name": name,
                        "tax_rate": rate,
                        "terms": "TaxTermsNone",
                        "terms_description": "",
                        "is_notional_acquisition_tax": False,
                    },
                )
                for tid, code, name, rate in TAX_CODES
            ),
        )

    def make_nominal_codes(self) -> Iterable[dict[str, Any]]:
        rng = self.rng("nominal-balances")
        return self.made(
            "nominal_codes",
            (
                (
                    i,
                    {
                        "reference": ref,
                        "name": name,
                        "cost_centre_id": None,
                        "cost_centre_code": "",
                        "department_id": None,
                        "department_code": "",
                        "nominal_account_type": kind,
                        "account_status_type": "AccountStatusActive",
                        "balance_year_to_date": money(rng, -50000, 50000),
                    },
                )
                for i, (ref, name, kind) in enumerate(NOMINAL_CODES, start=1)
            ),
        )

    def _code_names(self, resource: str, rows: list[tuple[str, str]]) -> Iterable[dict[str, Any]]:
        rng = self.rng(resource + "-contacts")
        out = []
        for i, (code, name) in enumerate(rows, start=1):
            first, last = fake.person(rng)
            out.append(
                (
                    i,
                    {
                        "code": code,
                        "name": name,
                        "contact_name": f"{first} {last}",
                        "contact_email_address": fake.email(first, last, "demo", rng),
                        "is_to_delete": False,
                    },
                )
            )
        return self.made(resource, out)

    def make_departments(self) -> Iterable[dict[str, Any]]:
        return self._code_names("departments", DEPARTMENTS)

    def make_cost_centres(self) -> Iterable[dict[str, Any]]:
        return self._code_names("cost_centres", COST_CENTRES)

    def make_banks(self) -> Iterable[dict[str, Any]]:
        received = {1: 0.0}
        for p in self.sales_postings:
            if p["kind"] == SALES_RECEIPT:
                received[1] = received[1] + p["gross"]
        for p in self.purchase_postings:
            if p["kind"] == SALES_RECEIPT:
                received[1] = received[1] - p["gross"]
        return self.made(
            "banks",
            (
                (
                    i,
                    {
                        "code": code,
                        "description": description,
                        "sort_code": sort_code,
                        "account_no": f"{10000000 + i * 7919:08d}" if sort_code else "",
                        "bank_name": "Demo Bank plc" if sort_code else "",
                        "account_type": kind,
                        "account_status_type": "AccountStatusActive",
                        "balance": r2(received.get(i, 0.0)),
                        "balance_in_base": r2(received.get(i, 0.0)),
                        "account_currency_id": 1,
                        "bank_account_nominal_reference": code,
                        "bank_account_nominal_cost_centre": "",
                        "bank_account_nominal_department": "",
                    },
                )
                for i, (code, description, sort_code, kind) in enumerate(BANKS, start=1)
            ),
        )

    def make_warehouses(self) -> Iterable[dict[str, Any]]:
        rng = self.rng("warehouse-addresses")
        out = []
        for i, name in enumerate(WAREHOUSES, start=1):
            address = fake.address(rng)
            out.append(
                (
                    i,
                    {
                        "name": name,
                        "description": f"{name} warehouse",
                        "warehouse_type": "WarehouseTypeStandard",
                        "use_for_sales_trading": True,
                        "address_1": address["address_line_1"],
                        "city": address["city"],
                        "postcode": address["postal_code"],
                        "country": "United Kingdom",
                    },
                )
            )
        return self.made("warehouses", out)

    def make_product_groups(self) -> Iterable[dict[str, Any]]:
        return self.made(
            "product_groups",
            (
                (
                    i,
                    {
                        "code": code,
                        "description": description,
                        "product_type": "EnumStockItemTypeStock",
                        "costing_method": "CostingMethodAverage",
                        "stock_nominal_code_id": 3,
                        "revenue_nominal_code_id": 12,
                        "accrual_nominal_code_id": 8,
                        "issue_nominal_code_id": 14,
                    },
                )
                for i, (code, description) in enumerate(PRODUCT_GROUPS, start=1)
            ),
        )

    def make_products(self) -> Iterable[dict[str, Any]]:
        stock: dict[int, list[dict[str, Any]]] = {}
        for holding in self.holdings:
            stock.setdefault(holding["product_id"], []).append(holding)
        out = []
        for p in self.products:
            held = stock.get(p["id"], [])
            in_stock = sum(h["in_stock"] for h in held)
            allocated = sum(h["allocated"] for h in held)
            out.append(
                (
                    p["id"],
                    {
                        "code": p["code"],
                        "name": p["name"],
                        "description": p["name"],
                        "product_group_id": p["group_id"],
                        "tax_code_id": p["tax_code_id"],
                        "product_status_type": "ProductStatusActive",
                        "allow_sales_order": True,
                        "standard_cost": p["cost"],
                        "average_buying_price": p["cost"],
                        "free_stock_quantity": in_stock - allocated,
                        "holding_average_buying_price": p["cost"],
                        "holding_quantity_in_stock": in_stock,
                        "holding_quantity_allocated": allocated,
                        "holding_quantity_on_order": sum(h["on_order"] for h in held),
                    },
                )
            )
        return self.made("products", out)

    def make_warehouse_holdings(self) -> Iterable[dict[str, Any]]:
        return self.made(
            "warehouse_holdings",
            (
                (
                    h["id"],
                    {
                        "warehouse_id": h["warehouse_id"],
                        "product_id": h["product_id"],
                        "warehouse_name": WAREHOUSES[h["warehouse_id"] - 1],
                        "quantity_in_stock": h["in_stock"],
                        "confirmed_qty_in_stock": h["in_stock"],
                        "unconfirmed_qty_in_stock": 0.0,
                        "quantity_reserved": 0.0,
                        "quantity_in_stock_less_reserved": h["in_stock"],
                        "quantity_allocated": h["allocated"],
                        "quantity_allocated_sop": h["allocated"],
                        "quantity_allocated_stock": 0.0,
                        "quantity_allocated_bom": 0.0,
                        "quantity_on_order": h["on_order"],
                        "free_stock_available": h["in_stock"] - h["allocated"],
                        "free_stock_available_less_reserved": h["in_stock"] - h["allocated"],
                        "is_to_delete": False,
                    },
                )
                for h in self.holdings
            ),
        )

    def _trader_fields(self, t: dict[str, Any], balance: float) -> dict[str, Any]:
        address = t["address"]
        return {
            "reference": t["reference"],
            "name": t["name"],
            "short_name": t["reference"],
            "balance": balance,
            "on_hold": t["on_hold"],
            "account_status_type": "AccountStatusActive",
            "currency_id": t["currency_id"],
            "exchange_rate_type": "ExchangeRateSingle",
            "credit_limit": t["credit_limit"],
            "default_tax_code_id": STANDARD_TAX,
            "payment_terms_days": t["terms"],
            "website": "www." + t["email"].split("@")[1],
            "telephone_country_code": "44",
            "telephone_area_code": t["phone"][1:5],
            "telephone_subscriber_number": t["phone"][6:],
            "fax_country_code": "",
            "fax_area_code": "",
            "fax_subscriber_number": "",
            "vat_number": t["vat"],
            "status_reason": "",
            "main_address_address_1": address["address_line_1"],
            "main_address_address_2": "",
            "main_address_city": address["city"],
            "main_address_postcode": address["postal_code"],
            "main_address_country": "United Kingdom",
            "main_address_contact_name": t["contact"],
        }

    def make_customers(self) -> Iterable[dict[str, Any]]:
        balances = self.balances(self.sales_postings)
        return self.made(
            "customers",
            (
                (
                    c["id"],
                    {
                        **self._trader_fields(c, balances.get(c["id"], 0.0)),
                        "main_address_customer_id": c["id"],
                    },
                )
                for c in self.customers
            ),
        )

    def make_suppliers(self) -> Iterable[dict[str, Any]]:
        balances = self.balances(self.purchase_postings)
        return self.made(
            "suppliers",
            (
                (
                    s["id"],
                    {
                        **self._trader_fields(s, balances.get(s["id"], 0.0)),
                        "main_address_supplier_id": s["id"],
                    },
                )
                for s in self.suppliers
            ),
        )

    def _posted(self, ledger: str) -> Iterable[dict[str, Any]]:
        postings = self.sales_postings if ledger == "sales" else self.purchase_postings
        trader = "customer_id" if ledger == "sales" else "supplier_id"
        out = []
        for p in postings:
            outstanding = r2(p["gross"] - p["allocated"])
            out.append(
                (
                    p["id"],
                    {
                        trader: p["trader_id"],
                        "trader_transaction_type": p["kind"],
                        "reference": p["reference"],
                        "second_reference": "",
                        "queried": "",
                        "transaction_date": ms(p["date"]),
                        "posted_date": ms(p["date"]),
                        "due_date": ms(p["date"] + timedelta(days=p["terms"])),
                        "full_settlement_date": ms(p["date"] + timedelta(days=p["terms"]))
                        if outstanding == 0
                        else None,
                        "document_goods_value": p["goods"],
                        "document_tax_value": p["tax"],
                        "document_gross_value": p["gross"],
                        "document_discount_value": 0.0,
                        "discount_percent": 0.0,
                        "document_tax_discount_value": 0.0,
                        "document_allocated_value": p["allocated"],
                        "document_outstanding_value": outstanding,
                        "base_goods_value": p["goods"],
                        "base_tax_value": p["tax"],
                        "base_gross_value": p["gross"],
                        "base_discount_value": 0.0,
                        "base_tax_discount_value": 0.0,
                        "base_allocated_value": p["allocated"],
                        "control_value_in_base_currency": p["gross"],
                        "exchange_rate": 1.0,
                        "settled_immediately": False,
                        "discount_days": 0,
                        "urn": p["urn"],
                        "user_name": USERS[0],
                    },
                )
            )
        return self.made(f"{ledger}_posted_transactions", out)

    def make_sales_posted_transactions(self) -> Iterable[dict[str, Any]]:
        return self._posted("sales")

    def make_purchase_posted_transactions(self) -> Iterable[dict[str, Any]]:
        return self._posted("purchase")

    def make_bank_posted_transactions(self) -> Iterable[dict[str, Any]]:
        """The bank side of sales receipts (money in) and purchase payments (money out)."""
        moves = [
            (p, "BankTransactionTypeCustomerReceipt", 1)
            for p in self.sales_postings
            if p["kind"] == SALES_RECEIPT
        ] + [
            (p, "BankTransactionTypeSupplierPayment", -1)
            for p in self.purchase_postings
            if p["kind"] == SALES_RECEIPT
        ]
        moves.sort(key=lambda m: (m[0]["date"], m[0]["urn"]))
        out = []
        for i, (p, kind, sign) in enumerate(moves, start=1):
            out.append(
                (
                    i,
                    {
                        "bank_id": 1,
                        "bank_transaction_type": kind,
                        "entry_description": "Receipt" if sign > 0 else "Payment",
                        "reference": p["reference"],
                        "second_reference": "",
                        "transaction_date": ms(p["date"]),
                        "posted_date": ms(p["date"]),
                        "cheque_value": r2(sign * p["gross"]),
                        "cheque_discount_value": 0.0,
                        "cheque_to_account_currency_rate": 1.0,
                        "bank_cheque_to_base_currency_rate": 1.0,
                        "cheque_currency_id": 1,
                        "source": "Sales" if sign > 0 else "Purchases",
                        "urn": p["urn"],
                        "user_name": USERS[0],
                    },
                )
            )
        return self.made("bank_posted_transactions", out)

    def _order(
        self, resource: str, trader_key: str, traders: list[dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        """Orders whose lines name real products and whose totals sum the lines."""
        sales = resource == "sop_orders"
        line_table = self.table("sop_order_lines" if sales else "pop_order_lines")
        rng = self.rng(resource + "-facts")
        line_rng = self.rng(resource + "-lines")
        times = stamps(self.rng(resource, "times"), self.rows)
        rates = {tid: rate for tid, _code, _name, rate in TAX_CODES}
        line_id = 0
        out = []
        for i, (created, _updated) in enumerate(times, start=1):
            trader = rng.choice(traders)
            lines = []
            for number in range(1, rng.randint(1, 4) + 1):
                product = rng.choice(self.products)
                line_id += 1
                quantity = float(rng.randint(1, 20))
                price = product["price"] if sales else product["cost"]
                discount = rng.choice([0.0, 0.0, 5.0]) if sales else 0.0
                unit = r2(price * (1 - discount / 100))
                net = r2(unit * quantity)
                tax = r2(net * rates[product["tax_code_id"]] / 100)
                fields: dict[str, Any] = {
                    "id": line_id,
                    ("sop_order_id" if sales else "pop_order_id"): i,
                    "line_number": number,
                    "line_type": "EnumLineTypeStandard",
                    "product_id": product["id"],
                    "warehouse_id": 1,
                    "code": product["code"],
                    "description": product["name"],
                    "line_quantity": quantity,
                    "tax_code_id": product["tax_code_id"],
                    "unit_discount_percent": discount,
                    "unit_discount_value": r2(price - unit),
                    "discounted_unit_price": unit,
                    "line_total_value": net,
                    "line_tax_value": tax,
                }
                fields["selling_unit_price" if sales else "unit_buying_price"] = price
                line = self.fill(line_table, line_rng, line_id, fields)
                self.stamped(line_table, line, created, created)
                line.pop("_created"), line.pop("_updated")
                lines.append(line)
            net_total = r2(sum(line["line_total_value"] for line in lines))
            tax_total = r2(sum(line["line_tax_value"] for line in lines))
            fields = {
                trader_key: trader["id"],
                "document_no": f"{i:010d}",
                "document_date": ms(created.replace(hour=0, minute=0, second=0, microsecond=0)),
                "document_status": "DocumentStatusLive",
                "exchange_rate": 1.0,
                "subtotal_goods_value": net_total,
                "subtotal_discount_value": 0.0,
                "total_net_value": net_total,
                "total_tax_value": tax_total,
                "total_gross_value": r2(net_total + tax_total),
                "lines": lines,
                "memos": [],
            }
            if sales:
                fields.update(
                    currency_id=trader["currency_id"],
                    subtotal_charge_net_value=0.0,
                    subtotal_charge_tax_value=0.0,
                    customer_document_no=f"PO{rng.randint(1000, 99999)}",
                )
            else:
                fields.update(subtotal_charges_net_value=0.0, subtotal_landed_costs_value=0.0)
            out.append((i, fields))
        return self.made(resource, out)

    def make_sop_orders(self) -> Iterable[dict[str, Any]]:
        return self._order("sop_orders", "customer_id", self.customers)

    def make_pop_orders(self) -> Iterable[dict[str, Any]]:
        return self._order("pop_orders", "supplier_id", self.suppliers)

    def make_users(self) -> Iterable[dict[str, Any]]:
        return self.made("users", ((i, {"name": n}) for i, n in enumerate(USERS, start=1)))

    def make_current_user(self) -> Iterable[dict[str, Any]]:
        table = self.table("current_user")
        rng = self.rng("current_user")
        record = self.fill(
            table,
            rng,
            1,
            {
                "id": 1,
                "logon_name": USERS[0],
                "friendly_name": "Sandbox Manager",
                "email_address": "manager@sandbox.example",
                "is_web_user": True,
                "last_logon_date_time": ms(fake.DATA_END),
            },
        )
        record[KEY_FIELD] = "1"
        yield self.stamped(table, record, fake.DATA_START, fake.DATA_END)


class Demo:
    """The Sage 200 demo data set: its site and companies, and the store's seeder."""

    def __init__(self, seed: int = 1, rows: int = 50, catalog: Catalog | None = None) -> None:
        self.seed, self.rows = seed, rows
        self.catalog = catalog or default_catalog()
        self.site_id = str(uuid.UUID(int=fake.rng_for(seed, "sage_200", "site").getrandbits(128)))
        self.companies = COMPANIES
        self._data: dict[str, CompanyData] = {}
        self.plans: dict[str, list[tuple[str, str, int]]] = {}
        self._lock = threading.Lock()

    def company(self, scope: str) -> CompanyData:
        with self._lock:
            data = self._data.get(scope)
            if data is None:
                data = self._data[scope] = CompanyData(self, scope)
            return data

    def sites(self) -> list[dict[str, Any]]:
        """The GET /sites records: the site once per company it holds."""
        created = datetime(2023, 11, 1, 9, 0, tzinfo=timezone.utc)
        return [
            {
                "company_id": company.id,
                "company_name": company.name,
                "site_id": self.site_id,
                "site_name": SITE_NAME,
                "site_short_name": SITE_SHORT_NAME,
                KEY_FIELD: str(company.id),
                "_created": sortable(created),
                "_updated": sortable(created),
            }
            for company in self.companies
        ]

    def __call__(self, store: Any, scope: str, resource: str) -> Iterable[dict[str, Any]]:
        """The store's seeder: the records of one resource of one company."""
        if scope == SITES_SCOPE:
            return self.sites() if resource == "sites" else []
        return self.company(scope).records(resource)
