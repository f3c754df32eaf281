"""Demo data of the Sage CRM sandbox: users, companies, people, leads, opportunities, cases, comms.

Records are built from the table definitions' columns (names in lower case, as the
API writes them); only the fields whose values mean something are chosen here. How
many records each entity has and how they link is arithmetic on ``rows``, so that each
entity is seeded on its own, lazily, and still refers to real records of the others:

- ``Users``: a fixed handful (``admin`` is user 1); every ``*_createdby``/``*_updatedby``
  is one of them;
- ``Company`` 1..rows; company ``c``'s primary person is person ``c``;
- ``Person`` 1..2*rows; person ``p`` works for company ``(p - 1) % rows + 1`` (a few of
  the second half work for nobody: their company id is null);
- ``Lead``, ``Opportunity``, ``Cases`` 1..rows; opportunities and cases name real companies
  and opportunities a person of that company; ``Communication`` 1..2*rows.

Dates are written in the server's local time with its offset (``2015-02-07T00:00:00-05:00``),
spread over fake.DATA_START..DATA_END with some records sharing a second.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sagesql.sandbox import fake
from sagesql.sandbox.clock import sortable
from sagesql.sandbox.store import Store
from sagesql.schemas.catalog import Column, Table, default_catalog

PRODUCT = "sage_crm"
_NOT_DOMAIN = re.compile(r"[^a-z0-9]+")

# logon, first name, last name; user 1 is the sandbox's default basic-auth user.
USERS = [
    ("admin", "System", "Administrator"),
    ("susan", "Susan", "Maye"),
    ("mark", "Mark", "Dunne"),
    ("priya", "Priya", "Shah"),
    ("kofi", "Kofi", "Mensah"),
    ("ingrid", "Ingrid", "Larsen"),
]

COMPANY_TYPES = [
    "Customer",
    "Customer",
    "Prospect",
    "Prospect",
    "Supplier",
    "Partner",
    "Competitor",
]
COMPANY_STATUSES = ["Active", "Active", "Active", "Inactive", "Archive"]
SECTORS = ["Finance", "Manufacturing", "Retail", "Technology", "Healthcare", "Education", "Media"]
TERRITORIES = ["Worldwide", "UK", "Europe", "USA", "Asia Pacific"]
LEAD_STAGES = ["Lead", "Qualified", "Assigned", "Converted", "No Interest"]
OPPO_STAGES = ["Prospecting", "Qualified", "Quoted", "Negotiating", "Closed"]
CASE_STATUSES = ["In Progress", "In Progress", "Pending", "Closed"]
PRIORITIES = ["Low", "Normal", "Normal", "High"]
COMM_ACTIONS = {
    "Task": ["PhoneOut", "PhoneIn", "EmailOut", "EmailIn", "LetterOut"],
    "Appointment": ["Meeting", "Demo", "Vacation"],
}
COMM_SUBJECTS = ["Follow up", "Quote", "Renewal", "Introduction", "Support call", "Invoice query"]
CASE_PROBLEMS = ["not delivered", "damaged", "wrong size", "stopped working", "missing parts"]


def counts(rows: int) -> dict[str, int]:
    """How many records each entity has for ``rows``."""
    return {
        "Users": len(USERS),
        "Company": rows,
        "Person": 2 * rows,
        "Lead": rows,
        "Opportunity": rows,
        "Cases": rows,
        "Communication": 2 * rows,
    }


def person_company(person: int, rows: int) -> int | None:
    """The company a person works for (None for a few of the second half)."""
    if person > rows and person % 7 == 0:
        return None
    return (person - 1) % rows + 1


def local_text(instant: datetime, local: tzinfo) -> str:
    """A date as Sage CRM writes it: server local time with its offset, to the second."""
    return instant.astimezone(local).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Audit:
    """The columns every CRM entity carries, named from its prefix (comp_, pers_, ...)."""

    key: str
    created: str
    updated: str
    created_by: str
    updated_by: str
    deleted: str

    @classmethod
    def of(cls, table: Table) -> Audit:
        prefix = (table.key or "").split("_", 1)[0]
        return cls(
            key=table.key or "",
            created=table.created_column or f"{prefix}_createddate",
            updated=table.updated_column or f"{prefix}_updateddate",
            created_by=f"{prefix}_createdby",
            updated_by=f"{prefix}_updatedby",
            deleted=f"{prefix}_deleted",
        )

    @property
    def names(self) -> frozenset[str]:
        return frozenset(vars(self).values())


def crm_tables() -> dict[str, Table]:
    """The Sage CRM table definitions by entity (their ``resource``: Company, Person...)."""
    catalog = default_catalog()
    tables = (catalog.table(t.name, PRODUCT) for t in catalog.tables(PRODUCT))
    return {t.resource: t for t in tables}


@functools.lru_cache(maxsize=4)
def company_names(seed: int, rows: int) -> tuple[str, ...]:
    """Company names by id - 1 (people's e-mail domains and opportunities use them)."""
    rng = fake.rng_for(seed, "crm", "company-names")
    return tuple(fake.company(rng) for _ in range(rows))


def domain(name: str) -> str:
    return _NOT_DOMAIN.sub("", name.lower())[:20] or "example"


class CrmSeeder:
    """The store's seeder for Sage CRM: ``seeder(store, scope, entity)`` yields its records."""

    def __init__(self, seed: int, rows: int, local: tzinfo) -> None:
        self.seed, self.rows, self.local = seed, max(1, rows), local
        self.tables = crm_tables()
        self._makers: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
            "Users": self._user,
            "Company": self._company,
            "Person": self._person,
            "Lead": self._lead,
            "Opportunity": self._opportunity,
            "Cases": self._case,
            "Communication": self._communication,
        }

    def __call__(self, store: Store, scope: str, entity: str) -> Iterator[dict[str, Any]]:
        table = self.tables.get(entity)
        if table is None:
            return iter(())
        return self.records(table)

    def records(self, table: Table) -> Iterator[dict[str, Any]]:
        entity = table.resource
        n = counts(self.rows)[entity]
        rng = fake.rng_for(self.seed, "crm", entity)
        audit = Audit.of(table)
        users = len(USERS)
        if entity == "Users":
            times = self._timeline(rng, n, fake.DATA_START, fake.DATA_START + timedelta(days=30))
        else:
            times = self._timeline(rng, n, fake.DATA_START, fake.DATA_END)
        make = self._makers[entity]
        names = [c.name for c in table.columns]
        others: list[Column] | None = None  # columns no maker fills: generic fake values
        for i, (created, updated) in enumerate(times, start=1):
            values = make(rng, i)
            by = (1, 1) if entity == "Users" else (rng.randint(1, users), rng.randint(1, users))
            if others is None:
                others = [
                    c for c in table.columns if c.name not in values and c.name not in audit.names
                ]
            record: dict[str, Any] = dict.fromkeys(names)  # the definition's order
            record.update(values)
            record[audit.key] = i
            record[audit.created] = local_text(created, self.local)
            record[audit.updated] = local_text(updated, self.local)
            record[audit.created_by], record[audit.updated_by] = by
            record[audit.deleted] = None  # CRM leaves the flag null on live records
            for column in others:
                record[column.name] = fake.value_for(column, rng, i)
            record["_key"] = i
            record["_created"] = sortable(created)
            record["_updated"] = sortable(updated)
            yield record

    @staticmethod
    def _timeline(
        rng: random.Random, n: int, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        """(created, updated) per record by id: created in id order, updated at or after it,
        some records updated in the same second as the one before."""
        created = fake.spread_times(rng, n, start, end)
        pairs: list[tuple[datetime, datetime]] = []
        previous: datetime | None = None
        for made in created:
            if rng.random() < 0.3:
                updated = made
            else:
                updated = made + timedelta(
                    seconds=rng.randrange(int((end - made).total_seconds()) + 1)
                )
            if previous is not None and previous >= made and rng.random() < 0.08:
                updated = previous
            pairs.append((made, updated))
            previous = updated
        return pairs

    # -- the fields that mean something, per entity -------------------------------------

    def _user(self, rng: random.Random, i: int) -> dict[str, Any]:
        logon, first, last = USERS[i - 1]
        return {"user_logon": logon, "user_firstname": first, "user_lastname": last}

    def _company(self, rng: random.Random, i: int) -> dict[str, Any]:
        name = company_names(self.seed, self.rows)[i - 1]
        return {
            "comp_name": name,
            "comp_type": rng.choice(COMPANY_TYPES),
            "comp_status": rng.choice(COMPANY_STATUSES),
            "comp_website": None if rng.random() < 0.1 else f"www.{domain(name)}.example",
            "comp_sector": rng.choice(SECTORS),
            "comp_territory": rng.choice(TERRITORIES),
            "comp_primarypersonid": i,
        }

    def _person(self, rng: random.Random, i: int) -> dict[str, Any]:
        first, last = fake.person(rng)
        company = person_company(i, self.rows)
        where = company_names(self.seed, self.rows)[company - 1] if company else "mail"
        return {
            "pers_companyid": company,
            "pers_firstname": first,
            "pers_lastname": last,
            "pers_emailaddress": None
            if rng.random() < 0.05
            else fake.email(first, last, domain(where), rng),
        }

    def _lead(self, rng: random.Random, i: int) -> dict[str, Any]:
        return {"lead_companyname": fake.company(rng), "lead_stage": rng.choice(LEAD_STAGES)}

    def _opportunity(self, rng: random.Random, i: int) -> dict[str, Any]:
        company = rng.randint(1, self.rows)
        second = company + self.rows
        person = (
            second
            if person_company(second, self.rows) == company and rng.random() < 0.5
            else company
        )
        stage = rng.choice(OPPO_STAGES)
        status = rng.choice(["Won", "Lost"]) if stage == "Closed" else "In Progress"
        name = company_names(self.seed, self.rows)[company - 1]
        return {
            "oppo_primarycompanyid": company,
            "oppo_primarypersonid": person,
            "oppo_description": f"{fake.product_name(rng)} order for {name}",
            "oppo_stage": stage,
            "oppo_status": status,
            "oppo_forecast": float(fake.money(rng, 500, 250_000)),
        }

    def _case(self, rng: random.Random, i: int) -> dict[str, Any]:
        return {
            "case_primarycompanyid": rng.randint(1, self.rows),
            "case_description": f"{fake.product_name(rng)} {rng.choice(CASE_PROBLEMS)}",
            "case_status": rng.choice(CASE_STATUSES),
            "case_priority": rng.choice(PRIORITIES),
        }

    def _communication(self, rng: random.Random, i: int) -> dict[str, Any]:
        kind = "Appointment" if rng.random() < 0.3 else "Task"
        subject = rng.choice(COMM_SUBJECTS)
        return {
            "comm_type": kind,
            "comm_action": rng.choice(COMM_ACTIONS[kind]),
            "comm_subject": f"{subject} #{i}",
            "comm_note": None if rng.random() < 0.4 else f"{subject}: {fake.product_name(rng)}",
        }
