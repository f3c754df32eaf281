"""Deterministic fake values for demo data: names, addresses, money, spread timestamps.

Everything takes a ``random.Random``: the same seed gives the same data on every
machine. ``rng_for`` derives an independent stream per (seed, name) so that adding
one table does not change another's data. ``record_from_columns`` builds a record
for any table definition from its columns' JSON paths (the fallback for tables
without a hand-written generator).
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sagesql.sandbox.records import nest
from sagesql.schemas.catalog import Column, Table

# Demo data spans a fixed period so that it is the same whatever the day it is made.
DATA_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DATA_END = datetime(2025, 9, 30, 18, 0, tzinfo=timezone.utc)

FIRST = [
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Noah",
    "Oliver",
    "George",
    "Arthur",
    "Leo",
    "Harry",
    "Freya",
    "Grace",
    "Jack",
    "Sophie",
    "Ella",
    "Thomas",
    "Priya",
    "Aisha",
    "Ravi",
    "Chloé",
    "Zoë",
    "Seán",
    "Niamh",
    "Łukasz",
    "Anaïs",
    "José",
    "Mei",
    "Kofi",
    "Ingrid",
]
LAST = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Wright",
    "Walker",
    "Evans",
    "Thomas",
    "Roberts",
    "O'Brien",
    "Murphy",
    "Khan",
    "Clarke",
    "Hughes",
    "Green",
    "Hall",
    "Wood",
    "Kowalski",
    "Müller",
    "García",
    "Nguyen",
    "Okafor",
]
WORDS = [
    "Acme",
    "Northwind",
    "Blue Harbour",
    "Cedar",
    "Pennine",
    "Thames",
    "Oak & Ivy",
    "Summit",
    "Redbrick",
    "Kestrel",
    "Harbour Lights",
    "Moorland",
    "Silverline",
    "Granite",
    "Orchard",
    "Beacon",
    "Riverside",
    "Highgate",
    "Lakeside",
    "Copperfield",
    "Fenwick",
]
TRADES = [
    "Trading",
    "Supplies",
    "Engineering",
    "Consulting",
    "Bakery",
    "Logistics",
    "Studios",
    "Builders",
    "Foods",
    "Electrical",
    "Media",
    "Garden Centre",
    "Pharmacy",
    "Motors",
]
SUFFIXES = ["Ltd", "Limited", "plc", "LLP", "& Co", "Group"]
STREETS = [
    "High Street",
    "Station Road",
    "Church Lane",
    "Mill Road",
    "Park Avenue",
    "King Street",
    "Queensway",
    "Victoria Road",
    "The Green",
    "London Road",
    "Bridge Street",
]
TOWNS = [
    ("London", "EC1A 1BB"),
    ("Manchester", "M1 1AE"),
    ("Leeds", "LS1 4DY"),
    ("Bristol", "BS1 5TR"),
    ("Newcastle", "NE1 7RU"),
    ("Glasgow", "G1 1XQ"),
    ("Cardiff", "CF10 1EP"),
    ("Belfast", "BT1 5GS"),
    ("York", "YO1 7HH"),
    ("Norwich", "NR2 1NH"),
    ("Dublin", "D02 XY45"),
]
PRODUCTS = [
    "Widget",
    "Gadget",
    "Bracket",
    "Cable",
    "Panel",
    "Valve",
    "Sensor",
    "Bolt",
    "Hinge",
    "Filter",
    "Pump",
    "Lamp",
    "Switch",
    "Gasket",
    "Bearing",
    "Spring",
    "Nozzle",
]
ADJECTIVES = ["Small", "Large", "Heavy-duty", "Stainless", "Blue", "Premium", "Economy", "Compact"]


def rng_for(seed: int, *names: str) -> random.Random:
    """An independent, repeatable random stream for one part of the demo data."""
    return random.Random(zlib.crc32("/".join(names).encode()) ^ (seed * 2_654_435_761))


def person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def company(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)} {rng.choice(TRADES)} {rng.choice(SUFFIXES)}"


def email(first: str, last: str, domain_hint: str, rng: random.Random) -> str:
    local = "".join(ch for ch in f"{first}.{last}".lower() if ch.isascii() and ch not in "'& ")
    domain = "".join(ch for ch in domain_hint.lower() if ch.isascii() and ch.isalnum())[:16]
    return f"{local}{rng.randint(1, 99)}@{domain or 'example'}.example"


def phone(rng: random.Random) -> str:
    return f"0{rng.randint(1000, 9999)} {rng.randint(100000, 999999)}"


def address(rng: random.Random) -> dict[str, str]:
    town, postcode = rng.choice(TOWNS)
    return {
        "address_line_1": f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
        "address_line_2": "",
        "city": town,
        "postal_code": postcode,
        "region": "",
    }


def product_name(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES)} {rng.choice(PRODUCTS)}"


def money(rng: random.Random, low: float, high: float) -> Decimal:
    cents = rng.randint(int(low * 100), int(high * 100))
    return Decimal(cents) / 100


def spread_times(
    rng: random.Random,
    n: int,
    start: datetime = DATA_START,
    end: datetime = DATA_END,
    same_second: float = 0.08,
) -> list[datetime]:
    """n sorted instants between start and end, a share of them equal to the one before
    (bulk edits stamp many rows with one second: pollers must cope)."""
    span = int((end - start).total_seconds())
    times: list[datetime] = []
    for _ in range(n):
        if times and rng.random() < same_second:
            times.append(times[-1])
        else:
            times.append(start + timedelta(seconds=rng.randrange(span)))
    times.sort()
    return times


# Code fields whose values the definition's descriptions do not list: Sage's recorded
# samples (schemas/definitions/samples) show them.
SAMPLE_CODES: dict[str, tuple[str, ...]] = {
    "mtd_activation_status": ("mtd_unavailable",),
    "accounting_type": ("accrual", "cash"),
    "mime_type": ("application/pdf", "image/png", "image/jpeg"),
    "insurance_type": ("",),
    "insurance_area": ("",),
}
NOTES = (
    "Thank you for your business.",
    "Payment due within 30 days.",
    "Delivered to the main office.",
    "As agreed by telephone.",
    "Raised in error.",
    "Goods returned damaged.",
)
JOBS = ("Accounts Payable", "Finance Director", "Office Manager", "Bookkeeper", "Buyer")
# "Allowed values - "invoice", "cash"", "returns invoice, cash or retailer", "it can be
# accrual or cash based": the values a description lists.
_LISTED = re.compile(
    r"(?:allowed values\s*[-:]?|returns|can be|either|one of[:]?)\s+"
    r"((?:\"?[a-z_]+\"?,?\s+)*?\"?[a-z_]+\"?\s+or\s+\"?[a-z_]+\"?|(?:\"[a-z_]+\",?\s*)+)",
    re.IGNORECASE,
)


def listed_values(description: str) -> list[str]:
    """The code values a column's description lists, if it lists them."""
    match = _LISTED.search(description or "")
    if not match:
        return []
    words = re.findall(r"[a-z_]+", match.group(1).replace(" or ", ","))
    return [w for w in words if w not in ("or", "and")]


def plausible_text(column: Column, rng: random.Random, index: int) -> str:
    """Text as Sage would hold it in this field: the description's or the samples' codes,
    dates, rates, references, phone numbers, notes; never the field's name (cut to the
    column's length)."""
    text = _plausible_text(column, rng, index)
    return text[: column.max_length] if column.max_length else text


def _plausible_text(column: Column, rng: random.Random, index: int) -> str:
    name = column.name.rsplit("__", 1)[-1]
    leaf = column.path[-1] if column.path else name
    codes = SAMPLE_CODES.get(leaf) or tuple(listed_values(column.description))
    if codes:
        return rng.choice(codes)
    if leaf.endswith("_date"):
        return (DATA_START + timedelta(days=rng.randrange(600))).date().isoformat()
    if leaf.endswith("exchange_rate"):
        return "1.0"
    if leaf.endswith(("guid", "combined_id", "schema_id")) or leaf == "id":
        return f"{rng.getrandbits(128):032x}"
    if leaf in ("telephone", "mobile", "fax") or leaf.endswith(("_telephone", "_mobile")):
        return phone(rng)
    if leaf == "job_title":
        return rng.choice(JOBS)
    if leaf == "address_line_1":
        return f"{rng.randint(1, 250)} {rng.choice(STREETS)}"
    if leaf == "city":
        return rng.choice(TOWNS)[0]
    if leaf in ("address_line_2", "region", "rcs_number", "siret") or leaf.endswith("free_form"):
        return ""
    if leaf == "file_extension":
        return rng.choice((".pdf", ".png", ".jpg"))
    if leaf == "file":
        return "JVBERi0xLjQK"  # base64 of a PDF's first line
    if "tax_number" in leaf:
        return f"GB{rng.randint(100000000, 999999999)}"
    if leaf.endswith(("notes", "note", "details", "description", "reason")) or "terms" in leaf:
        return rng.choice(NOTES)
    if leaf.startswith("default_note") or leaf.startswith("insurance"):
        return rng.choice(NOTES)
    if "reference" in leaf or leaf.endswith(("number", "code", "prefix")):
        initials = "".join(part[0] for part in leaf.split("_") if part).upper()[:3]
        text = f"{initials}-{index + 1:04d}" if leaf != "code" else f"{index + 1:04d}"
    else:
        text = product_name(rng)
    return text


def value_for(column: Column, rng: random.Random, index: int, *, plausible: bool = False) -> Any:
    """A plausible value for a column of any table (used by the generic generator);
    ``plausible``: text as Sage holds it (plausible_text), not the field's name."""
    if column.enum:
        return rng.choice(column.enum)
    kind = column.type
    name = column.name
    if kind == "INTEGER":
        return rng.randint(0, 100) if not name.endswith("_id") else rng.randint(1, 50)
    if kind == "DECIMAL":
        return str(money(rng, 0, 5000))
    if kind == "BOOLEAN":
        return rng.random() < 0.5
    if kind == "DATE":
        return (DATA_START + timedelta(days=rng.randrange(600))).date().isoformat()
    if kind == "DATETIME":
        instant = DATA_START + timedelta(seconds=rng.randrange(50_000_000))
        return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "JSON":
        return []
    if "email" in name:
        first, last = person(rng)
        return email(first, last, "demo", rng)
    if name.endswith(("name", "displayed_as")):
        named = f"{product_name(rng)} {index}"
        return named[: column.max_length] if plausible and column.max_length else named
    if plausible:
        return plausible_text(column, rng, index)
    text = f"{name.replace('_', ' ').title()} {index}"
    if column.max_length:
        text = text[: column.max_length]
    return text


def record_from_columns(
    table: Table,
    rng: random.Random,
    index: int,
    fixed: dict[str, Any] | None = None,
    skip: Sequence[str] = (),
    *,
    plausible: bool = False,
) -> dict[str, Any]:
    """A record with a value at every column's path (``fixed`` wins, by column name)."""
    fixed = fixed or {}
    values: dict[tuple[str, ...], Any] = {}
    for column in table.columns:
        if column.name in skip or column.path[0].startswith("$parent"):
            continue
        values[column.path] = (
            fixed[column.name]
            if column.name in fixed
            else value_for(column, rng, index, plausible=plausible)
        )
    return nest(values)
