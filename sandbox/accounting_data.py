"""Demo books of the Sage Accounting sandbox: two businesses of deterministic, consistent records.

Every record is a pure function of (seed, business, resource, index), so that each
resource is seeded on its own, lazily, and still refers to real records of the others:

- reference data: ``contact_types`` (CUSTOMER, VENDOR), ``tax_rates`` (GB_STANDARD...),
  statuses, transaction types and the other lookups with Sage's own ids; a chart of
  ``ledger_accounts``; three ``bank_accounts``;
- ``contacts``: ``rows`` live ones (index 0 is both customer and supplier, then by
  ``index % 10``: 0-5 customers, 6-8 suppliers, 9 both) and a few tombstones after them;
- ``products`` (10 + rows/100) and ``services``; ``sales_invoices`` (rows),
  ``sales_credit_notes`` (rows/10), ``purchase_invoices`` (rows/2) whose lines name real
  products, services, ledger accounts and tax rates and sum to the totals;
  ``contact_payments`` pay the even-numbered invoices in full (those are PAID);
  ``journals`` (rows/10) balance;
- every other table with a list endpoint: a handful of records built from its columns
  (``fake.record_from_columns``), links pointing at real records where the target is known.

Ids are 32 hex digits (md5 of the coordinates), money is text with two decimals, times
are spread over fake.DATA_START..DATA_END (some sharing a second) and written
``2025-01-02T03:04:05Z``. The second business is small (``rows // 10``, from 5 to 200
contacts). Lookups keep Sage's readable ids (CUSTOMER, GB_STANDARD, SALES_INVOICE...).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sagesql.sandbox import fake
from sagesql.sandbox.clock import iso, sortable
from sagesql.sandbox.records import get_path, set_path
from sagesql.schemas.catalog import Column, Table, default_catalog

PRODUCT = "sage_accounting"
USER_SCOPE = "_user"  # businesses and the user belong to the login, not to a business
SETTINGS_KEY = "settings"  # store key of a singleton resource (financial_settings...)
GENERIC_ROWS = 5
CENT = Decimal("0.01")
_M64 = (1 << 64) - 1

# Lookup resources with Sage's own (readable) ids.
LOOKUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "contact_types": (("CUSTOMER", "Customer"), ("VENDOR", "Supplier")),
    # Codes, as the definition's id maxLength (15, 20) and the recorded samples have them.
    "tax_schemes": (
        ("NOT_REGISTERED", "Not Registered"),
        ("STANDARD", "Standard"),
        ("CASH", "Cash"),
        ("FLAT_RATE_INVOICE", "Flat Rate - Invoice"),
    ),
    "business_activity_types": (
        ("SERVICES", "Services"),
        ("SALES", "Sales of goods"),
        ("LIBERAL", "Liberal profession"),
    ),
    "legal_form_types": (("SARL", "SARL"), ("SAS", "SAS"), ("EI", "Entreprise individuelle")),
    "artefact_statuses": (
        ("DRAFT", "Draft"),
        ("UNPAID", "Unpaid"),
        ("PART_PAID", "Part Paid"),
        ("PAID", "Paid"),
        ("VOID", "Void"),
        ("DISPUTED", "Disputed"),
    ),
    "transaction_types": (
        ("SALES_INVOICE", "Sales Invoice"),
        ("SALES_CREDIT_NOTE", "Sales Credit Note"),
        ("PURCHASE_INVOICE", "Purchase Invoice"),
        ("PURCHASE_CREDIT_NOTE", "Purchase Credit Note"),
        ("CUSTOMER_RECEIPT", "Customer Receipt"),
        ("VENDOR_PAYMENT", "Supplier Payment"),
        ("CUSTOMER_REFUND", "Customer Refund"),
        ("VENDOR_REFUND", "Supplier Refund"),
        ("JOURNAL", "Journal"),
        ("OTHER_PAYMENT", "Other Payment"),
        ("OTHER_RECEIPT", "Other Receipt"),
        ("BANK_TRANSFER", "Bank Transfer"),
    ),
    "bank_account_types": (
        ("CHECKING", "Current"),
        ("SAVINGS", "Savings"),
        ("CREDIT_CARD", "Credit Card"),
        ("CASH_IN_HAND", "Cash in Hand"),
        ("LOAN", "Loan"),
        ("OTHER", "Other"),
    ),
    "currencies": (
        ("GBP", "Pound Sterling (GBP)"),
        ("EUR", "Euro (EUR)"),
        ("USD", "US Dollar (USD)"),
        ("CHF", "Swiss Franc (CHF)"),
        ("JPY", "Japanese Yen (JPY)"),
        ("CAD", "Canadian Dollar (CAD)"),
    ),
    "countries": (
        ("GB", "United Kingdom (GB)"),
        ("IE", "Ireland (IE)"),
        ("FR", "France (FR)"),
        ("DE", "Germany (DE)"),
        ("ES", "Spain (ES)"),
        ("US", "United States (US)"),
    ),
    "address_types": (
        ("DELIVERY", "Delivery"),
        ("ACCOUNTS", "Accounts"),
        ("SALES", "Sales"),
        ("PURCHASING", "Purchasing"),
    ),
    "catalog_item_types": (
        ("STOCK_ITEM", "Stock"),
        ("NON_STOCK_ITEM", "Non-stock"),
        ("SERVICE", "Service"),
    ),
    "payment_methods": (
        ("BANK_TRANSFER", "Bank Transfer"),
        ("CASH", "Cash"),
        ("CHEQUE", "Cheque"),
        ("CREDIT_DEBIT", "Credit/Debit Card"),
        ("DIRECT_DEBIT", "Direct Debit"),
    ),
    "ledger_account_types": (
        ("SALES", "Sales"),
        ("OTHER_INCOME", "Other Income"),
        ("DIRECT_EXPENSES", "Direct Expenses"),
        ("OVERHEADS", "Overheads"),
        ("DEPRECIATION", "Depreciation"),
        ("CURRENT_ASSETS", "Current Assets"),
        ("FIXED_ASSETS", "Fixed Assets"),
        ("BANK", "Bank"),
        ("CURRENT_LIABILITY", "Current Liability"),
        ("EQUITY", "Equity"),
    ),
    "contact_person_types": (
        ("ACCOUNTS", "Accounts"),
        ("SALES", "Sales"),
        ("PURCHASING", "Purchasing"),
    ),
}

# id, name, percentage
TAX_RATES = (
    ("GB_STANDARD", "Standard", Decimal("20.00")),
    ("GB_LOWER", "Lower", Decimal("5.00")),
    ("GB_ZERO", "Zero", Decimal("0.00")),
    ("GB_EXEMPT", "Exempt", Decimal("0.00")),
    ("GB_NO_TAX", "No Tax", Decimal("0.00")),
)

# nominal code, name, ledger account type, control account
CHART = (
    (30, "Office Equipment and IT", "FIXED_ASSETS", False),
    (1100, "Trade Debtors", "CURRENT_ASSETS", True),
    (1200, "Current", "BANK", False),
    (1210, "Savings", "BANK", False),
    (1230, "Cash in Hand", "BANK", False),
    (2100, "Trade Creditors", "CURRENT_LIABILITY", True),
    (2200, "Sales Tax Control Account", "CURRENT_LIABILITY", True),
    (2201, "Purchase Tax Control Account", "CURRENT_LIABILITY", True),
    (3000, "Capital introduced", "EQUITY", False),
    (4000, "Sales - Products", "SALES", False),
    (4010, "Sales - Services", "SALES", False),
    (4900, "Other Income", "OTHER_INCOME", False),
    (5000, "Cost of Sales - Goods", "DIRECT_EXPENSES", False),
    (5100, "Carriage", "DIRECT_EXPENSES", False),
    (7100, "Rent and Rates", "OVERHEADS", False),
    (7200, "Electricity, Gas and Water", "OVERHEADS", False),
    (7500, "Office Costs", "OVERHEADS", False),
    (7900, "Bank Charges and Interest", "OVERHEADS", False),
    (8000, "Depreciation", "DEPRECIATION", False),
)
_GROUPS = {
    "SALES": ("INCOME", "Income"),
    "OTHER_INCOME": ("INCOME", "Income"),
    "DIRECT_EXPENSES": ("EXPENDITURE", "Expenditure"),
    "OVERHEADS": ("EXPENDITURE", "Expenditure"),
    "DEPRECIATION": ("EXPENDITURE", "Expenditure"),
    "CURRENT_ASSETS": ("ASSETS", "Assets"),
    "FIXED_ASSETS": ("ASSETS", "Assets"),
    "BANK": ("ASSETS", "Assets"),
    "CURRENT_LIABILITY": ("LIABILITY", "Liabilities"),
    "EQUITY": ("LIABILITY", "Liabilities"),
}
# name, nominal code of its ledger account, bank account type
BANKS = (
    ("Current Account", 1200, "CHECKING"),
    ("Savings Account", 1210, "SAVINGS"),
    ("Cash in Hand", 1230, "CASH_IN_HAND"),
)
SERVICES = (
    ("CONSULT", "Consulting (per hour)", "85.00"),
    ("INSTALL", "Installation", "240.00"),
    ("SUPPORT", "Annual support contract", "1200.00"),
    ("TRAIN", "Training day", "650.00"),
    ("DELIVER", "Delivery", "25.00"),
    ("DESIGN", "Design work (per hour)", "70.00"),
)
PRICE_TYPES = ("Sales Price", "Trade", "Wholesale")
JOURNAL_PAIRS = ((7100, 1200), (7500, 1200), (1210, 1200), (8000, 30), (1200, 3000), (7900, 1200))

# Link fields whose name does not say the resource they point at.
LINK_TARGETS = {
    "status": "artefact_statuses",
    "usual_supplier": "contacts",
    "contact": "contacts",
    "artefact": None,
    "payment_on_account": None,
    "recurring_invoice": None,
    "ledger_account_group": None,
    "original_quote_estimate": "sales_quotes",
    "original_invoice": "sales_invoices",
    "deduction_rate": None,
}


# Resources whose record definition has ``links`` (an array of Link {href, rel, type},
# sage-accounting-v3.1.openapi.json: Contact, SalesInvoice, ContactPayment...), with
# where the record opens in Sage's web application. Sage answers one link, the record's
# page: ``{"href": "https://accounts-extra.sageone.com/advanced_uk/<page>/<number>",
# "rel": "alternate", "type": "text/html"}`` (the recorded Product sample has that
# shape). The catalog has no ``links`` column (the generator leaves it out), so it is
# only in the answers, as Sage's are.
WEB_PAGES = {
    "contacts": "contacts",
    "sales_invoices": "invoicing/sales_invoices",
    "sales_credit_notes": "invoicing/sales_credit_notes",
    "sales_corrective_invoices": "invoicing/sales_corrective_invoices",
    "sales_quotes": "invoicing/sales_quotes",
    "sales_estimates": "invoicing/sales_estimates",
    "purchase_invoices": "purchases/purchase_invoices",
    "purchase_credit_notes": "purchases/purchase_credit_notes",
    "purchase_corrective_invoices": "purchases/purchase_corrective_invoices",
    "contact_payments": "payments",
    "contact_allocations": "allocations",
    "unallocated_artefacts": "unallocated_artefacts",
    "stock_movements": "stock_movements",
}
WEB_ROOT = "https://accounts-extra.sageone.com/advanced_uk"


def web_links(resource: str, key: Any) -> list[dict[str, str]] | None:
    """The ``links`` of a record of ``resource`` (WEB_PAGES), None where it has none."""
    page = WEB_PAGES.get(resource)
    if page is None or key is None:
        return None
    number = int(hashlib.md5(str(key).encode()).hexdigest()[:7], 16) + 10_000_000
    return [{"href": f"{WEB_ROOT}/{page}/{number}", "rel": "alternate", "type": "text/html"}]


def with_links(resource: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with its ``links`` (web_links), where the definition has them."""
    if "links" not in record and (found := web_links(resource, record.get("id"))) is not None:
        record["links"] = found
    return record


# Link fields whose definition (an enum of statuses...) has no $path, outside documents.
PATHLESS_LINKS = frozenset({"status"})


def money(value: Decimal) -> str:
    """Money as Sage sends it: text with two decimals."""
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def hex_id(seed: int, scope: str, resource: str, index: int | str) -> str:
    """The id of a demo record: 32 hex digits, the same for the same coordinates."""
    return hashlib.md5(f"{seed}/{scope}/{resource}/{index}".encode()).hexdigest()


def mix(x: int) -> int:
    """A 64-bit hash of an integer (splitmix64): cheap per-row randomness by index."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def link(resource: str, key: str, displayed_as: str) -> dict[str, str]:
    """A link to another record, as Sage embeds it."""
    return {"id": key, "displayed_as": displayed_as, "$path": f"/{resource}/{key}"}


def plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def singular(word: str) -> str:
    for end, repl in (("ies", "y"), ("sses", "ss"), ("ses", "s"), ("xes", "x"), ("s", "")):
        if word.endswith(end):
            return word[: -len(end)] + repl
    return word


# -- the catalog, as the emulator serves it ---------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One list endpoint: its path segment (the store resource), base table and views."""

    name: str
    table: Table
    views: tuple[Table, ...] = ()
    # line array field -> its child table (invoice_lines -> sales_invoice_lines)
    children: dict[str, Table] = field(default_factory=dict)

    @property
    def singleton(self) -> bool:
        return self.table.key is None

    @property
    def key_path(self) -> tuple[str, ...]:
        key = self.table.key or "id"
        return self.table.column(key).path if self.table.has_column(key) else (key,)


@functools.cache
def resources() -> dict[str, Resource]:
    """Path segment -> resource, for every table of the catalog with a list operation."""
    catalog = default_catalog()
    tables = [catalog.table(s.name, PRODUCT) for s in catalog.tables(PRODUCT)]
    by_path: dict[str, list[Table]] = {}
    for table in tables:
        if "list" in table.operations:
            segment = table.operations["list"].path.strip("/").split("/")[0]
            by_path.setdefault(segment, []).append(table)
    out: dict[str, Resource] = {}
    for segment, group in sorted(by_path.items()):
        base = next((t for t in group if not t.fixed_parameters), group[0])
        children = {}
        for name in base.children:
            child = catalog.table(name, PRODUCT)
            if child.parent is not None:
                children[child.parent.path[0]] = child
        views = tuple(t for t in group if t is not base)
        out[segment] = Resource(segment, base, views, children)
    return out


def link_target(name: str) -> str | None:
    """The resource a link field points at (``default_sales_ledger_account`` -> ledger_accounts)."""
    if name in LINK_TARGETS:
        return LINK_TARGETS[name]
    served = resources()
    words = name.split("_")
    for start in range(len(words)):
        stem = "_".join(words[start:])
        for candidate in (plural(stem), stem):
            if candidate in served:
                return candidate
            if candidate in ("customers", "suppliers"):
                return "contacts"
    return None


def link_prefixes(table: Table) -> set[tuple[str, ...]]:
    """Paths of the link objects of a table's records (an id and a displayed_as under it)."""
    paths = {c.path for c in table.columns}
    return {
        p[:-1]
        for p in paths
        if len(p) > 1 and p[-1] == "id" and (*p[:-1], "displayed_as") in paths
        if not p[0].startswith("$")
    }


def fit(record: dict[str, Any], table: Table) -> dict[str, Any]:
    """The record without fields the table's records do not have (meta fields kept)."""
    fields = {c.path[0] for c in table.columns}
    return {k: v for k, v in record.items() if k in fields or k.startswith("_")}


def template(table: Table) -> dict[str, Any]:
    """Every top-level field of the table's records, null: hand-written records start here."""
    return {c.path[0]: None for c in table.columns if not c.path[0].startswith("$parent")}


# -- the two businesses -------------------------------------------------------------------


def business_ids(seed: int) -> tuple[str, str]:
    """The lead business and the second one."""
    return hex_id(seed, "", "businesses", 0), hex_id(seed, "", "businesses", 1)


def business_rows(rows: int, lead: bool) -> int:
    return rows if lead else max(5, min(rows // 10, 200))


# -- the seeder ---------------------------------------------------------------------------


class AccountingData:
    """The seeder of the store: demo records of one (business, resource), on first use."""

    def __init__(self, seed: int, rows: int) -> None:
        self.seed, self.rows = seed, rows
        self.lead, self.second = business_ids(seed)
        self._books: dict[str, Books] = {}

    def books(self, scope: str) -> Books | None:
        if scope not in (self.lead, self.second):
            return None
        if scope not in self._books:
            self._books[scope] = Books(
                self.seed, scope, business_rows(self.rows, scope == self.lead)
            )
        return self._books[scope]

    def __call__(self, store: Any, scope: str, resource: str) -> Iterator[dict[str, Any]]:
        if scope == USER_SCOPE:
            if resource == "businesses":
                yield from self.businesses()
            return
        books = self.books(scope)
        if books is not None:
            yield from books.records(resource)

    def businesses(self) -> Iterator[dict[str, Any]]:
        rng = fake.rng_for(self.seed, "businesses")
        names = ("Harbour Lights Trading Ltd", "Kestrel Consulting LLP")
        for i, key in enumerate((self.lead, self.second)):
            created = fake.DATA_START + timedelta(days=3 * i, hours=9)
            town, postcode = fake.TOWNS[i]
            yield {
                "id": key,
                "displayed_as": names[i],
                "created_at": iso(created),
                "updated_at": iso(created),
                "name": names[i],
                "address_line_1": f"{rng.randint(1, 99)} {rng.choice(fake.STREETS)}",
                "address_line_2": "",
                "city": town,
                "postal_code": postcode,
                "country": {"id": "GB", "displayed_as": "United Kingdom (GB)"},
                "region": "",
                "telephone": fake.phone(rng),
                "mobile": "",
                "website": f"https://www.{names[i].split()[0].lower()}.example",
                "is_demo": True,
                "ni_based": False,
                "subscriptions": [],
                "_created": sortable(created),
                "_updated": sortable(created),
            }

    def user(self) -> dict[str, Any]:
        return {
            "id": hex_id(self.seed, "", "user", 0),
            "displayed_as": "Sandbox User",
            "created_at": iso(fake.DATA_START),
            "updated_at": iso(fake.DATA_START),
            "first_name": "Sandbox",
            "last_name": "User",
            "initials": "SU",
            "email": "sandbox.user@example.com",
            "locale": "en-GB",
        }


@dataclass
class Timeline:
    """Created/updated/deleted instants of n records (created in index order)."""

    created: list[datetime]
    updated: list[datetime]
    deleted: list[datetime | None]


class Books:
    """One business's records; ``records(resource)`` yields them for the store."""

    def __init__(self, seed: int, scope: str, rows: int) -> None:
        self.seed, self.scope, self.rows = seed, scope, max(1, rows)
        n = self.rows
        self.counts = {
            "contacts": n,
            "products": 10 + n // 100 if n < 1_000_000 else 10_000,
            "services": len(SERVICES),
            "sales_invoices": n,
            "sales_credit_notes": max(2, n // 10),
            "purchase_invoices": max(3, n // 2),
            "journals": max(3, n // 10),
        }
        self.counts["contact_payments"] = (
            self.counts["sales_invoices"] // 2 + self.counts["purchase_invoices"] // 2
        )
        # Tombstones are extra records after the live ones (nothing refers to them).
        self.tombstones = {
            "contacts": max(1, n // 50),
            "products": 1,
            "services": 1,
            "sales_invoices": max(1, n // 100),
            "purchase_invoices": 1,
            "journals": 1,
        }
        self._salt: dict[str, int] = {}
        self._links: dict[tuple[str, Any], dict[str, str]] = {}

    # -- small pure helpers -----------------------------------------------------------

    def id(self, resource: str, index: int | str) -> str:
        return hex_id(self.seed, self.scope, resource, index)

    def h(self, resource: str, index: int) -> int:
        salt = self._salt.get(resource)
        if salt is None:
            salt = self._salt[resource] = int(self.id(resource, "salt")[:16], 16)
        return mix(salt ^ index)

    def timeline(self, resource: str, n: int, deleted_from: int | None = None) -> Timeline:
        rng = fake.rng_for(self.seed, self.scope, resource, "times")
        created = fake.spread_times(rng, n)
        end = fake.DATA_END
        updated: list[datetime] = []
        deleted: list[datetime | None] = []
        for i, when in enumerate(created):
            h = self.h(resource + "/t", i)
            room = int((end - when).total_seconds())
            if h % 10 < 6 or room <= 0:
                updated.append(when)
            else:
                updated.append(when + timedelta(seconds=(h >> 8) % room))
            if deleted_from is not None and i >= deleted_from:
                last = updated[-1]
                room = int((end - last).total_seconds())
                deleted.append(last + timedelta(seconds=(h >> 20) % max(1, room)))
            else:
                deleted.append(None)
        return Timeline(created, updated, deleted)

    @staticmethod
    def stamp(record: dict[str, Any], t: Timeline, i: int, deletions: bool) -> dict[str, Any]:
        created, updated, deleted = t.created[i], t.updated[i], t.deleted[i]
        record["created_at"], record["_created"] = _times(created)
        record["updated_at"], record["_updated"] = _times(updated)
        record["deleted_at"], record["_deleted"] = _times(deleted) if deleted else (None, None)
        if not deletions:
            del record["deleted_at"]
        return record

    # Links to reference data are made once and shared by the records (never changed:
    # records are serialised as soon as they are built).

    def lookup(self, resource: str, key: str) -> dict[str, str]:
        found = self._links.get((resource, key))
        if found is None:
            shown = next(shown for k, shown in LOOKUPS[resource] if k == key)
            found = self._links[(resource, key)] = link(resource, key, shown)
        return found

    def tax_rate(self, key: str) -> dict[str, str]:
        found = self._links.get(("tax_rates", key))
        if found is None:
            name, pct = next((n, p) for k, n, p in TAX_RATES if k == key)
            shown = f"{name} {pct:.2f}%" if key != "GB_NO_TAX" else "No Tax"
            found = self._links[("tax_rates", key)] = link("tax_rates", key, shown)
        return found

    @staticmethod
    def tax_percent(key: str) -> Decimal:
        return next(pct for k, _, pct in TAX_RATES if k == key)

    def ledger(self, code: int) -> dict[str, str]:
        found = self._links.get(("ledger_accounts", code))
        if found is None:
            name = next(n for c, n, _, _ in CHART if c == code)
            key = self.id("ledger_accounts", code)
            found = link("ledger_accounts", key, f"{name} ({code:04d})")
            self._links[("ledger_accounts", code)] = found
        return found

    def bank(self, i: int) -> dict[str, str]:
        name, code, _ = BANKS[i]
        return link("bank_accounts", self.id("bank_accounts", i), f"{name} ({code:04d})")

    # -- contacts ---------------------------------------------------------------------

    @staticmethod
    def contact_kind(i: int) -> tuple[bool, bool]:
        """(customer, supplier) of contact i."""
        if i == 0 or i % 10 == 9:
            return True, True
        return i % 10 < 6, i % 10 >= 6

    def contact_name(self, i: int) -> tuple[str, str, str | None, str | None]:
        """(name, reference, first name, last name) of contact i."""
        h = self.h("contacts", i)
        first = fake.FIRST[h % len(fake.FIRST)]
        h //= len(fake.FIRST)
        last = fake.LAST[h % len(fake.LAST)]
        h //= len(fake.LAST)
        if h % 5 == 0:  # a sole trader: the contact is a person
            name, is_person = f"{first} {last}", True
        else:
            h //= 5
            word = fake.WORDS[h % len(fake.WORDS)]
            h //= len(fake.WORDS)
            trade = fake.TRADES[h % len(fake.TRADES)]
            h //= len(fake.TRADES)
            name, is_person = f"{word} {trade} {fake.SUFFIXES[h % len(fake.SUFFIXES)]}", False
        letters = "".join(ch for ch in name.upper() if "A" <= ch <= "Z")[:3]
        reference = f"{letters}{i + 1:03d}"
        return name, reference, (first if is_person else None), last

    def contact_link(self, i: int) -> dict[str, str]:
        name, reference, _, _ = self.contact_name(i)
        return link("contacts", self.id("contacts", i), f"{name} ({reference})")

    def pick_contact(self, h: int, customer: bool) -> int:
        """A live contact of the wanted kind, chosen by the hash h."""
        i = h % self.rows
        for _ in range(10):
            kind = self.contact_kind(i)
            if kind[0] if customer else kind[1]:
                return i
            i = (i + 1) % self.rows
        return 0

    def address(self, i: int, owner: str) -> dict[str, Any]:
        h = self.h("addresses/" + owner, i)
        town, postcode = fake.TOWNS[h % len(fake.TOWNS)]
        h //= len(fake.TOWNS)
        street = fake.STREETS[h % len(fake.STREETS)]
        h //= len(fake.STREETS)
        country = ("IE", "Ireland (IE)") if town == "Dublin" else ("GB", "United Kingdom (GB)")
        return {
            "address_line_1": f"{h % 250 + 1} {street}",
            "address_line_2": "",
            "city": town,
            "postal_code": postcode,
            "region": "",
            "country": link("countries", *country),
        }

    def contact(self, i: int, t: Timeline, table: Table) -> dict[str, Any]:
        key = self.id("contacts", i)
        name, reference, first, last = self.contact_name(i)
        customer, supplier = self.contact_kind(i)
        h = mix(self.h("contacts", i))
        types = []
        if customer:
            types.append(self.lookup("contact_types", "CUSTOMER"))
        if supplier:
            types.append(self.lookup("contact_types", "VENDOR"))
        person = f"{first} {last}" if first else f"{fake.FIRST[h % len(fake.FIRST)]} {last}"
        local = "".join(ch for ch in person.lower() if "a" <= ch <= "z" or ch == " ")
        domain = "".join(ch for ch in name.lower() if "a" <= ch <= "z")[:16] or "example"
        mail = f"{local.replace(' ', '.')}{i + 1}@{domain}.example"
        phone = f"0{1000 + h % 9000} {100000 + (h >> 16) % 900000}"
        address = self.address(i, "contacts")
        address_id = self.id("addresses", f"contact/{i}")
        person_id = self.id("contact_persons", f"contact/{i}")
        balance = Decimal((h >> 24) % 500_000 - 100_000) / 100 if customer else Decimal(0)
        record = _template_of(table)
        record.update(
            id=key,
            displayed_as=f"{name} ({reference})",
            balance=money(balance),
            contact_types=types,
            name=name,
            reference=reference,
            default_sales_ledger_account=self.ledger(4000) if customer else None,
            default_sales_tax_rate=self.tax_rate("GB_STANDARD") if customer else None,
            default_purchase_ledger_account=self.ledger(5000) if supplier else None,
            tax_number=f"GB{100000000 + h % 900000000}" if h % 3 == 0 else "",
            notes="",
            locale="en",
            main_address={
                "id": address_id,
                "displayed_as": f"{address['address_line_1']}\n{address['city']}",
                "$path": f"/addresses/{address_id}",
                **address,
                "is_main_address": True,
            },
            main_contact_person={
                "id": person_id,
                "displayed_as": person,
                "$path": f"/contact_persons/{person_id}",
                "name": person,
                "job_title": "",
                "telephone": phone,
                "mobile": "",
                "email": mail,
                "is_main_contact": True,
                "is_preferred_contact": True,
            },
            credit_limit=money(Decimal(((h >> 40) % 20) * 500)),
            credit_days=30,
            currency=self.lookup("currencies", "GBP"),
            email=mail,
            deletable=True,
            system=False,
            is_active=(h >> 50) % 20 != 0,
            gdpr_obfuscated=False,
            has_unfinished_recurring_invoices=False,
            cis_registered=False,
            ni_based=False,
            gb_based=address["country"]["id"] == "GB",
            tax_treatment={
                "home_tax": True,
                "eu_tax_registered": False,
                "eu_not_tax_registered": False,
                "rest_of_world_tax": False,
                "is_importer": False,
            },
        )
        record["$path"] = f"/contacts/{key}"
        return self.stamp(record, t, i, True)

    # -- reference data -----------------------------------------------------------------

    def ledger_accounts(self, table: Table) -> Iterator[dict[str, Any]]:
        t = self.timeline("ledger_accounts", len(CHART))
        for i, (code, name, kind, control) in enumerate(CHART):
            shown = f"{name} ({code:04d})"
            key = self.id("ledger_accounts", code)
            group = _GROUPS[kind]
            income = kind in ("SALES", "OTHER_INCOME")
            expense = kind in ("DIRECT_EXPENSES", "OVERHEADS", "DEPRECIATION")
            record = _template_of(table) | {
                "id": key,
                "displayed_as": shown,
                "$path": f"/ledger_accounts/{key}",
                "ledger_account_group": {"id": group[0], "displayed_as": group[1]},
                "name": name,
                "display_name": name,
                "visible_scopes": ["journals", "reporting"]
                + (["sales", "other_receipt"] if income else [])
                + (["expenses", "other_payment"] if expense else [])
                + (["bank"] if kind == "BANK" else []),
                "included_in_chart": True,
                "nominal_code": code,
                "ledger_account_type": self.lookup("ledger_account_types", kind),
                "tax_rate": self.tax_rate("GB_STANDARD") if income or expense else None,
                "fixed_tax_rate": False,
                "visible_in_banking": kind == "BANK",
                "visible_in_expenses": expense,
                "visible_in_journals": True,
                "visible_in_other_payments": expense,
                "visible_in_other_receipts": income,
                "visible_in_reporting": True,
                "visible_in_sales": income,
                "is_control_account": control,
                "control_name": name.upper().replace(" ", "_") if control else None,
                "display_formatted": f"{code:04d} - {name}",
                "tax_recoverable": expense,
                "recoverable_percentage": "100.0" if expense else None,
                "cis_materials": False,
                "tax_instalment": False,
                "cis_labour": False,
            }
            yield self.stamp(record, t, i, False)

    def tax_rates(self, table: Table) -> Iterator[dict[str, Any]]:
        t = self.timeline("tax_rates", len(TAX_RATES))
        for i, (key, name, pct) in enumerate(TAX_RATES):
            record = _template_of(table) | {
                **self.tax_rate(key),  # a copy: the shared link stays as it is
                "name": name,
                "agency": "HMRC",
                "percentage": f"{pct:.2f}",
                "percentages": [
                    {"percentage": f"{pct:.2f}", "from_date": "2011-01-04", "to_date": None}
                ],
                "is_visible": True,
                "retailer": False,
                "editable": False,
                "deletable": False,
                "is_combined_rate": False,
                "component_tax_rates": [],
            }
            yield self.stamp(record, t, i, False)

    def bank_accounts(self, table: Table) -> Iterator[dict[str, Any]]:
        t = self.timeline("bank_accounts", len(BANKS))
        for i, (name, code, kind) in enumerate(BANKS):
            h = self.h("bank_accounts", i)
            address_id = self.id("addresses", f"bank/{i}")
            address = self.address(i, "bank_accounts")
            cash = kind == "CASH_IN_HAND"
            record = _template_of(table) | {
                **self.bank(i),
                "bank_account_details": {
                    "account_name": name,
                    "account_number": None if cash else f"{10000000 + h % 90000000}",
                    "sort_code": None if cash else f"{h % 100:02d}{h // 100 % 10000:04d}",
                    "bic": None,
                    "iban": None,
                },
                "ledger_account": self.ledger(code),
                "bank_account_type": self.lookup("bank_account_types", kind),
                "balance": money(Decimal(h % 5_000_000) / 100),
                "main_address": {
                    "id": address_id,
                    "displayed_as": address["city"],
                    "$path": f"/addresses/{address_id}",
                    **address,
                    "is_main_address": True,
                },
                "nominal_code": code,
                "editable": True,
                "deletable": False,
                "default_payment_method": self.lookup(
                    "payment_methods", "CASH" if cash else "BANK_TRANSFER"
                ),
                "is_active": True,
                "currency": self.lookup("currencies", "GBP"),
            }
            yield self.stamp(record, t, i, True)

    # -- products and services ----------------------------------------------------------

    def product_core(self, i: int) -> tuple[str, str, Decimal, str]:
        """(item code, description, unit price, sales tax rate id) of product i."""
        h = self.h("products", i)
        adjective = fake.ADJECTIVES[h % len(fake.ADJECTIVES)]
        h //= len(fake.ADJECTIVES)
        noun = fake.PRODUCTS[h % len(fake.PRODUCTS)]
        h //= len(fake.PRODUCTS)
        price = Decimal(h % 50_000 + 150) / 100
        h //= 50_000
        tax = "GB_STANDARD" if h % 20 < 17 else ("GB_LOWER" if h % 20 < 19 else "GB_ZERO")
        code = f"{noun[:3].upper()}-{i + 1:04d}"
        return code, f"{adjective} {noun}", price, tax

    def product_link(self, i: int) -> dict[str, str]:
        description = self.product_core(i)[1]
        return link("products", self.id("products", i), description)

    def products(self, table: Table) -> Iterator[dict[str, Any]]:
        live, dead = self.counts["products"], self.tombstones["products"]
        t = self.timeline("products", live + dead, deleted_from=live)
        for i in range(live + dead):
            code, description, price, tax = self.product_core(i)
            h = mix(self.h("products", i))
            supplier = self.pick_contact(h, customer=False)
            prices = []
            for p, label in enumerate(PRICE_TYPES):
                factor = (Decimal(100), Decimal(90), Decimal(80))[p] / 100
                prices.append(
                    {
                        "id": self.id("sales_prices", f"{i}/{p}"),
                        "displayed_as": label,
                        "created_at": iso(t.created[i]),
                        "updated_at": iso(t.created[i]),
                        "price_name": label,
                        "price": money(price * factor),
                        "price_includes_tax": False,
                        "product_sales_price_type": link(
                            "product_sales_price_types",
                            self.id("product_sales_price_types", p),
                            label,
                        ),
                    }
                )
            record = _template_of(table) | {
                **self.product_link(i),
                "deletable": True,
                "deactivatable": True,
                "used_on_recurring_invoice": False,
                "item_code": code,
                "description": description,
                "notes": "",
                "sales_ledger_account": self.ledger(4000),
                "sales_tax_rate": self.tax_rate(tax),
                "purchase_ledger_account": self.ledger(5000),
                "usual_supplier": self.contact_link(supplier) if h % 3 else None,
                "purchase_tax_rate": self.tax_rate(tax),
                "cost_price": money(price * Decimal("0.6")),
                "sales_prices": prices,
                "purchase_description": description,
                "active": h % 15 != 0,
                "catalog_item_type": self.lookup(
                    "catalog_item_types", "STOCK_ITEM" if h % 4 == 0 else "NON_STOCK_ITEM"
                ),
            }
            yield self.stamp(record, t, i, True)

    def service_link(self, i: int) -> dict[str, str]:
        return link("services", self.id("services", i), SERVICES[i % len(SERVICES)][1])

    def services(self, table: Table) -> Iterator[dict[str, Any]]:
        live, dead = self.counts["services"], self.tombstones["services"]
        t = self.timeline("services", live + dead, deleted_from=live)
        for i in range(live + dead):
            code, description, rate = SERVICES[i % len(SERVICES)]
            record = _template_of(table) | {
                **self.service_link(i),
                "deletable": True,
                "deactivatable": True,
                "used_on_recurring_invoice": False,
                "item_code": code if i < len(SERVICES) else f"{code}-{i}",
                "description": description,
                "notes": "",
                "sales_ledger_account": self.ledger(4010),
                "purchase_ledger_account": self.ledger(5000),
                "sales_tax_rate": self.tax_rate("GB_STANDARD"),
                "purchase_tax_rate": self.tax_rate("GB_STANDARD"),
                "sales_rates": [
                    {
                        "id": self.id("service_rates", i),
                        "displayed_as": "Rate",
                        "created_at": iso(t.created[i]),
                        "updated_at": iso(t.created[i]),
                        "rate_name": "Rate",
                        "rate": rate,
                        "rate_includes_tax": False,
                        "service_rate_type": link(
                            "service_rate_types", self.id("service_rate_types", 0), "Rate"
                        ),
                    }
                ],
                "purchase_description": description,
                "active": True,
                "cost_price": money(Decimal(rate) / 2),
                "oss_service": False,
            }
            yield self.stamp(record, t, i, True)

    # -- documents ----------------------------------------------------------------------

    def lines(self, resource: str, i: int, sales: bool) -> list[dict[str, Any]]:
        """Lines of a document, with the amounts the server would compute."""
        child = next(iter(resources()[resource].children.values()))
        h = mix(self.h(resource + "/lines", i))
        out = []
        for n in range(1 + h % 4):
            h2 = mix(h ^ (n + 1))
            quantity = Decimal(1 + h2 % 10)
            h2 //= 10
            if h2 % 10 < 7 or not sales:
                p = h2 // 10 % self.counts["products"]
                _, description, price, tax = self.product_core(p)
                item = {"product": self.product_link(p), "service": None}
                ledger = self.ledger(4000 if sales else 5000)
                if not sales:
                    price = (price * Decimal("0.6")).quantize(CENT)
            else:
                s = h2 // 10 % len(SERVICES)
                description, price, tax = SERVICES[s][1], Decimal(SERVICES[s][2]), "GB_STANDARD"
                item = {"product": None, "service": self.service_link(s)}
                ledger = self.ledger(4010)
            out.append(
                fit(
                    line_amounts(
                        {
                            "id": self.id(resource + "/lines", f"{i}/{n}"),
                            "displayed_as": description,
                            "description": description,
                            **item,
                            "ledger_account": ledger,
                            "quantity": f"{quantity:.2f}",
                            "unit_price": money(price),
                            "tax_rate": self.tax_rate(tax),
                            "unit_price_includes_tax": False,
                            "discount_amount": "0.00",
                        },
                        self.tax_percent(tax),
                    ),
                    child,
                )
            )
        return out

    def document(
        self,
        resource: str,
        i: int,
        t: Timeline,
        table: Table,
        *,
        kind: str,
    ) -> dict[str, Any]:
        """A sales or purchase invoice or credit note (kind: SI, SCN, PI)."""
        sales = kind != "PI"
        h = mix(self.h(resource, i))
        contact = self.pick_contact(h, customer=sales)
        name, reference, _, _ = self.contact_name(contact)
        created = t.created[i]
        date = max(fake.DATA_START.date(), (created - timedelta(days=h % 4)).date())
        lines = self.lines(resource, i, sales)
        totals = document_totals(lines)
        deleted = t.deleted[i] is not None
        status = "UNPAID"
        roll = (h >> 8) % 100
        if deleted or roll < 3:
            status = "DRAFT"
        elif roll < 5:
            status = "VOID"
        elif i % 2 == 0 and kind != "SCN":
            status = "PAID"  # paid in full by contact payment i // 2
        paid = totals["total_amount"] if status == "PAID" else "0.00"
        outstanding = "0.00" if status in ("PAID", "VOID", "DRAFT") else totals["total_amount"]
        key = self.id(resource, i)
        number = f"{kind}-{i + 1}"
        address = self.address(contact, "contacts")
        record = _template_of(table) | {
            "id": key,
            "displayed_as": number,
            "$path": f"/{resource}/{key}",
            "editable": status == "DRAFT",
            "vat_reverse_charge": False,
            "transaction_type": self.lookup(
                "transaction_types",
                {"SI": "SALES_INVOICE", "SCN": "SALES_CREDIT_NOTE", "PI": "PURCHASE_INVOICE"}[kind],
            ),
            "contact": self.contact_link(contact),
            "contact_name": name,
            "contact_reference": reference,
            "date": date.isoformat(),
            "reference": f"PO{(h >> 16) % 100000:05d}" if h % 3 else "",
            "notes": "",
            **totals,
            "total_paid": paid,
            "payments_allocations_total_amount": paid,
            "payments_allocations_total_discount": "0.00",
            "outstanding_amount": outstanding,
            "currency": self.lookup("currencies", "GBP"),
            "exchange_rate": "1.0",
            "inverse_exchange_rate": "1.0",
            "base_currency_net_amount": totals["net_amount"],
            "base_currency_tax_amount": totals["tax_amount"],
            "base_currency_total_amount": totals["total_amount"],
            "base_currency_outstanding_amount": outstanding,
            "total_discount_amount": "0.00",
            "base_currency_total_discount_amount": "0.00",
            "status": self.lookup("artefact_statuses", status),
            "void_reason": "Raised in error" if status == "VOID" else None,
            "tax_analysis": tax_analysis(lines),
            "payments_allocations": [],
            "last_paid": date.isoformat() if status == "PAID" else None,
            "tax_reconciled": False,
            "migrated": False,
            "is_cis": False,
            "tax_calculation_method": "invoice",
        }
        if kind == "SI":
            record["invoice_number_prefix"] = "SI-"
            record["invoice_number"] = number
            record["invoice_lines"] = lines
            record["due_date"] = (date + timedelta(days=30)).isoformat()
            record["sent"] = status != "DRAFT"
            record["sent_by_email"] = False
        elif kind == "SCN":
            record["credit_note_number_prefix"] = "SCN-"
            record["credit_note_number"] = number
            record["credit_note_lines"] = lines
            record["sent"] = status != "DRAFT"
            record["sent_by_email"] = False
        else:
            record["vendor_reference"] = f"INV{(h >> 24) % 1000000:06d}"
            record["invoice_lines"] = lines
            record["due_date"] = (date + timedelta(days=30)).isoformat()
        if sales:
            record["main_address"] = {
                "displayed_as": f"{address['address_line_1']}\n{address['city']}",
                **address,
            }
            record["main_address_free_form"] = None
        return self.stamp(fit(record, table), t, i, "deleted_at" in record)

    def live_and_dead(self, resource: str) -> tuple[int, int, Timeline]:
        """How many live records and tombstones a resource has, and their times."""
        live, dead = self.counts[resource], self.tombstones.get(resource, 0)
        return live, dead, self.timeline(resource, live + dead, deleted_from=live if dead else None)

    def documents(self, resource: str, kind: str, table: Table) -> Iterator[dict[str, Any]]:
        live, dead, t = self.live_and_dead(resource)
        for i in range(live + dead):
            yield self.document(resource, i, t, table, kind=kind)

    def contact_payments(self, table: Table) -> Iterator[dict[str, Any]]:
        receipts = self.counts["sales_invoices"] // 2
        total = self.counts["contact_payments"]
        t = self.timeline("contact_payments", total)
        si_table = resources()["sales_invoices"].table
        pi_table = resources()["purchase_invoices"].table
        si_times = self.live_and_dead("sales_invoices")[2]
        pi_times = self.live_and_dead("purchase_invoices")[2]
        for j in range(total):
            if j < receipts:
                resource, i, kind = "sales_invoices", 2 * j, "SI"
                doc = self.document(resource, i, si_times, si_table, kind=kind)
            else:
                resource, i, kind = "purchase_invoices", 2 * (j - receipts), "PI"
                doc = self.document(resource, i, pi_times, pi_table, kind=kind)
            h = self.h("contact_payments", j)
            paid = doc["status"]["id"] == "PAID"
            amount = doc["total_amount"] if paid else money(Decimal(h % 100_000) / 100)
            key = self.id("contact_payments", j)
            sales = kind == "SI"
            record = _template_of(table) | {
                "id": key,
                "displayed_as": f"{'Receipt' if sales else 'Payment'} {j + 1}",
                "$path": f"/contact_payments/{key}",
                "transaction_type": self.lookup(
                    "transaction_types", "CUSTOMER_RECEIPT" if sales else "VENDOR_PAYMENT"
                ),
                "payment_method": self.lookup(
                    "payment_methods", ("BANK_TRANSFER", "CHEQUE", "CREDIT_DEBIT")[h % 3]
                ),
                "contact": doc["contact"],
                "bank_account": self.bank(0),
                "date": doc["date"],
                "net_amount": amount,
                "tax_amount": "0.00",
                "total_amount": amount,
                "currency": self.lookup("currencies", "GBP"),
                "exchange_rate": "1.0",
                "base_currency_net_amount": amount,
                "base_currency_tax_amount": "0.00",
                "base_currency_total_amount": amount,
                "base_currency_currency_charge": "0.00",
                "reference": doc["displayed_as"],
                "allocated_artefacts": [
                    {
                        "id": self.id("allocated_artefacts", j),
                        "artefact": link(resource, doc["id"], doc["displayed_as"]),
                        "amount": amount,
                        "discount": "0.00",
                    }
                ]
                if paid
                else [],
                "editable": True,
            }
            yield self.stamp(record, t, j, True)

    def journals(self, table: Table) -> Iterator[dict[str, Any]]:
        live, dead = self.counts["journals"], self.tombstones["journals"]
        t = self.timeline("journals", live + dead, deleted_from=live)
        for i in range(live + dead):
            h = self.h("journals", i)
            debit_code, credit_code = JOURNAL_PAIRS[h % len(JOURNAL_PAIRS)]
            amount = money(Decimal((h >> 8) % 500_000 + 100) / 100)
            key = self.id("journals", i)
            details = (
                "Monthly rent",
                "Office supplies",
                "Transfer to savings",
                "Depreciation",
                "Capital introduced",
                "Bank charges",
            )[h % len(JOURNAL_PAIRS)]
            journal_lines = [
                {
                    "id": self.id("journal_lines", f"{i}/{n}"),
                    "ledger_account": self.ledger(code),
                    "details": details,
                    "debit": amount if n == 0 else "0.00",
                    "credit": "0.00" if n == 0 else amount,
                    "include_on_tax_return": False,
                    "tax_reconciled": False,
                    "cleared": False,
                    "bank_reconciled": False,
                }
                for n, code in enumerate((debit_code, credit_code))
            ]
            record = _template_of(table) | {
                "id": key,
                "displayed_as": f"JNL-{i + 1}",
                "$path": f"/journals/{key}",
                "transaction_type": self.lookup("transaction_types", "JOURNAL"),
                "date": t.created[i].date().isoformat(),
                "reference": f"JNL-{i + 1}",
                "description": details,
                "total": amount,
                "journal_lines": journal_lines,
                "migrated": False,
            }
            yield self.stamp(record, t, i, True)

    # -- everything else ----------------------------------------------------------------

    def generic_display(self, resource: str, i: int) -> str:
        if resource in LOOKUPS:
            return LOOKUPS[resource][i % len(LOOKUPS[resource])][1]
        if resource == "product_sales_price_types":
            return PRICE_TYPES[i % len(PRICE_TYPES)]
        return f"{singular(resource).replace('_', ' ').title()} {i + 1}"

    def generic_key(self, resource: str, i: int) -> str:
        if resource in LOOKUPS:
            return LOOKUPS[resource][i % len(LOOKUPS[resource])][0]
        return self.id(resource, i)

    def link_to(self, target: str | None, rng: random.Random) -> dict[str, str] | None:
        """A link to a real record of the target resource (None when it is not served)."""
        if target is None or target not in resources():
            return None
        if target == "contacts":
            return self.contact_link(rng.randrange(self.rows))
        if target == "ledger_accounts":
            return self.ledger(rng.choice(CHART)[0])
        if target == "tax_rates":
            return self.tax_rate(rng.choice(TAX_RATES)[0])
        if target == "bank_accounts":
            return self.bank(rng.randrange(len(BANKS)))
        if target == "products":
            return self.product_link(rng.randrange(self.counts["products"]))
        if target == "services":
            return self.service_link(rng.randrange(len(SERVICES)))
        if target in self.counts:
            i = rng.randrange(self.counts[target])
            prefix = {"sales_invoices": "SI", "sales_credit_notes": "SCN"}.get(target)
            prefix = prefix or {"purchase_invoices": "PI", "journals": "JNL"}.get(target, "")
            shown = f"{prefix}-{i + 1}" if prefix else f"Payment {i + 1}"
            return link(target, self.id(target, i), shown)
        resource = resources()[target]
        if resource.singleton:
            return None
        n = len(LOOKUPS[target]) if target in LOOKUPS else GENERIC_ROWS
        if target == "product_sales_price_types":
            n = len(PRICE_TYPES)
        i = rng.randrange(n)
        return link(target, self.generic_key(target, i), self.generic_display(target, i))

    def generic(self, resource: Resource) -> Iterator[dict[str, Any]]:
        table = resource.table
        name = resource.name
        if resource.singleton:
            n, dead = 1, 0
        elif name in LOOKUPS:
            n, dead = len(LOOKUPS[name]), 0
        elif name == "product_sales_price_types":
            n, dead = len(PRICE_TYPES), 0
        else:
            n, dead = GENERIC_ROWS, (1 if table.deletions else 0)
        t = self.timeline(name, n + dead, deleted_from=n if dead else None)
        prefixes = sorted(link_prefixes(table), key=len)
        key_path = resource.key_path
        for i in range(n + dead):
            rng = fake.rng_for(self.seed, self.scope, name, str(i))
            record = fake.record_from_columns(table, rng, i, plausible=True)
            for column in table.columns:
                if column.type == "JSON" and not column.path[0].startswith("$"):
                    set_path(record, column.path, [] if _plural_field(column) else None)
            for prefix in prefixes:
                target = link_target(prefix[-1])
                value = self.link_to(target, rng)
                if value is not None and prefix[-1] in PATHLESS_LINKS:
                    value = {k: v for k, v in value.items() if k != "$path"}
                if value is None:
                    value = {
                        "id": self.id(prefix[-1], rng.randrange(GENERIC_ROWS)),
                        "displayed_as": get_path(record, (*prefix, "displayed_as")),
                    }
                set_path(record, prefix, _merge_link(get_path(record, prefix), value))
            key = SETTINGS_KEY if resource.singleton else self.generic_key(name, i)
            if resource.singleton:
                record["$path"] = f"/{name}"
            else:
                if key_path == ("id",):
                    record["id"] = key
                    record["$path"] = f"/{name}/{key}"
                else:  # exchange rates are keyed by their currency
                    key, shown = LOOKUPS["currencies"][1:][i % (len(LOOKUPS["currencies"]) - 1)]
                    set_path(record, key_path[:-1], link("currencies", key, shown))
                    record["$path"] = f"/{name}/{key}"
                if "displayed_as" in record:
                    record["displayed_as"] = self.generic_display(name, i)
            if "name" in record and name in LOOKUPS:
                record["name"] = self.generic_display(name, i)
            if "$path" not in {c.path[0] for c in table.columns}:
                record.pop("$path", None)
            record["_key"] = key
            if "created_at" in record or "updated_at" in record:
                stamped = self.stamp({}, t, i, False)
                for k in ("created_at", "updated_at"):
                    if k in record:
                        record[k] = stamped[k]
                record["_created"], record["_updated"] = stamped["_created"], stamped["_updated"]
            else:
                record["_created"] = record["_updated"] = sortable(t.created[i])
            if dead and i >= n:
                record["_deleted"] = sortable(t.deleted[i] or t.updated[i])
            if "deleted_at" in record:
                record["deleted_at"] = (
                    iso(t.deleted[i] or t.updated[i]) if dead and i >= n else None
                )
            yield record

    # -- dispatch -------------------------------------------------------------------------

    def records(self, name: str) -> Iterator[dict[str, Any]]:
        for record in self._records(name):
            yield with_links(name, record)

    def _records(self, name: str) -> Iterator[dict[str, Any]]:
        resource = resources().get(name)
        if resource is None:
            return
        table = resource.table
        if name == "contacts":
            live, dead = self.counts["contacts"], self.tombstones["contacts"]
            t = self.timeline("contacts", live + dead, deleted_from=live)
            for i in range(live + dead):
                yield self.contact(i, t, table)
        elif name == "ledger_accounts":
            yield from self.ledger_accounts(table)
        elif name == "tax_rates":
            yield from self.tax_rates(table)
        elif name == "bank_accounts":
            yield from self.bank_accounts(table)
        elif name == "products":
            yield from self.products(table)
        elif name == "services":
            yield from self.services(table)
        elif name == "sales_invoices":
            yield from self.documents(name, "SI", table)
        elif name == "sales_credit_notes":
            yield from self.documents(name, "SCN", table)
        elif name == "purchase_invoices":
            yield from self.documents(name, "PI", table)
        elif name == "contact_payments":
            yield from self.contact_payments(table)
        elif name == "journals":
            yield from self.journals(table)
        else:
            yield from self.generic(resource)


# -- amounts --------------------------------------------------------------------------------


def line_amounts(line: dict[str, Any], percent: Decimal) -> dict[str, Any]:
    """Fill a line's net, tax and total from quantity, unit price, discount and tax rate."""
    quantity = Decimal(str(line.get("quantity") or "1"))
    unit = Decimal(str(line.get("unit_price") or "0"))
    discount = Decimal(str(line.get("discount_amount") or "0"))
    net = (quantity * unit - discount).quantize(CENT, rounding=ROUND_HALF_UP)
    tax = (net * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    line.update(
        net_amount=money(net),
        tax_amount=money(tax),
        total_amount=money(net + tax),
        base_currency_unit_price=money(unit),
        base_currency_net_amount=money(net),
        base_currency_tax_amount=money(tax),
        base_currency_total_amount=money(net + tax),
        base_currency_discount_amount=money(discount),
    )
    return line


def document_totals(lines: list[dict[str, Any]]) -> dict[str, str]:
    """A document's totals: the sums of its lines."""
    net = sum((Decimal(line["net_amount"]) for line in lines), Decimal(0))
    tax = sum((Decimal(line["tax_amount"]) for line in lines), Decimal(0))
    quantity = sum((Decimal(str(line.get("quantity") or 0)) for line in lines), Decimal(0))
    return {
        "net_amount": money(net),
        "tax_amount": money(tax),
        "total_amount": money(net + tax),
        "total_quantity": f"{quantity:.2f}",
    }


def tax_analysis(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Net, tax and total per tax rate (goods are product lines, services the others)."""
    rates: dict[str, dict[str, Any]] = {}
    for line in lines:
        rate = line.get("tax_rate") or {"id": "GB_NO_TAX", "displayed_as": "No Tax"}
        entry = rates.setdefault(
            rate["id"],
            {"tax_rate": rate, "net": Decimal(0), "tax": Decimal(0), "goods": Decimal(0)},
        )
        net = Decimal(line["net_amount"])
        entry["net"] += net
        entry["tax"] += Decimal(line["tax_amount"])
        if line.get("service") is None:
            entry["goods"] += net
    return [
        {
            "tax_rate": e["tax_rate"],
            "net_amount": money(e["net"]),
            "tax_amount": money(e["tax"]),
            "total_amount": money(e["net"] + e["tax"]),
            "goods_amount": money(e["goods"]),
            "service_amount": money(e["net"] - e["goods"]),
        }
        for e in rates.values()
    ]


# -- record helpers -------------------------------------------------------------------------


def _times(instant: datetime) -> tuple[str, str]:
    """(the API's text, the store's text) of an instant: clock.iso and clock.sortable,
    faster for the whole UTC seconds of the demo data (a million rows count)."""
    if instant.microsecond or instant.utcoffset():
        return iso(instant), sortable(instant)
    text = instant.isoformat()[:19]
    return text + "Z", text + ".000000Z"


@functools.cache
def _template_cached(table_name: str) -> tuple[tuple[str, Any], ...]:
    table = default_catalog().table(table_name, PRODUCT)
    return tuple(template(table).items())


def _template_of(table: Table) -> dict[str, Any]:
    return dict(_template_cached(table.name))


def _plural_field(column: Column) -> bool:
    return bool(column.path[-1].endswith("s"))


def _merge_link(current: Any, value: dict[str, Any]) -> dict[str, Any]:
    """A link object; an embedded object keeps its other fields (an address's city...)."""
    merged = dict(current) if isinstance(current, dict) else {}
    merged.update(value)
    return merged
