"""Sage CRM (sagecrm2 REST, SData 2.0 style) tables, hand-written from the documented fields.

No machine-readable definition of the Sage CRM REST API exists (SOURCES.md), so the
entities and fields below come from SAGE-APIS.md section 3. Every CRM table also has
the columns every CRM table carries: ``*_CreatedBy``, ``*_CreatedDate``,
``*_UpdatedBy``, ``*_UpdatedDate`` and the soft-delete flag ``*_Deleted``. Field
names are written in lower case, as the API returns them; it matches them
case-insensitively.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.generator.common import COMPARISON, column

# SData page sizes are the server's choice; CRM's default configuration serves 100.
# Unconfirmed: configurable per connection through Pagesize.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

TEXT_OPERATORS = [*COMPARISON, "IN", "LIKE"]
ORDERED_OPERATORS = [*COMPARISON, "IN"]

# entity, table name, alias used by integration platforms, field prefix, description,
# fields: (field, SQL type, description, required on create)
ENTITIES: list[tuple[str, str, str | None, str, str, list[tuple[str, str, str, bool]]]] = [
    (
        "Company",
        "company",
        "accounts",
        "comp",
        "Companies (accounts): the organisations CRM users sell to and support.",
        [
            ("CompanyId", "INTEGER", "Unique identifier of the company.", False),
            ("Name", "TEXT", "Company name.", True),
            ("Type", "TEXT", "Company type (Customer, Prospect, Supplier, ...).", False),
            ("Status", "TEXT", "Company status (Active, Inactive, ...).", False),
            ("WebSite", "TEXT", "Web site address.", False),
            ("Sector", "TEXT", "Market sector.", False),
            ("Territory", "TEXT", "Territory the company belongs to.", False),
            ("PrimaryPersonId", "INTEGER", "The company's primary contact (Person).", False),
        ],
    ),
    (
        "Person",
        "person",
        "contacts",
        "pers",
        "People (contacts): individuals, usually working for a company.",
        [
            ("PersonId", "INTEGER", "Unique identifier of the person.", False),
            ("CompanyId", "INTEGER", "The company the person works for.", False),
            ("FirstName", "TEXT", "First name.", False),
            ("LastName", "TEXT", "Last name.", True),
            ("EmailAddress", "TEXT", "E-mail address.", False),
        ],
    ),
    (
        "Lead",
        "lead",
        "leads",
        "lead",
        "Leads: potential business not yet qualified as an opportunity.",
        [
            ("LeadId", "INTEGER", "Unique identifier of the lead.", False),
            ("CompanyName", "TEXT", "Name of the company the lead is about.", True),
            ("Stage", "TEXT", "Stage of the lead (Lead, Qualified, ...).", False),
        ],
    ),
    (
        "Opportunity",
        "opportunity",
        "opportunities",
        "oppo",
        "Opportunities: qualified sales pipeline.",
        [
            ("OpportunityId", "INTEGER", "Unique identifier of the opportunity.", False),
            ("PrimaryCompanyId", "INTEGER", "The company the opportunity is with.", False),
            ("PrimaryPersonId", "INTEGER", "The main contact of the opportunity.", False),
            ("Description", "TEXT", "Description of the opportunity.", True),
            ("Stage", "TEXT", "Sales stage.", False),
            ("Status", "TEXT", "Status (In Progress, Won, Lost, ...).", False),
            ("Forecast", "DECIMAL", "Forecast value.", False),
        ],
    ),
    (
        "Users",
        "users",
        None,
        "user",
        "CRM users.",
        [
            ("UserId", "INTEGER", "Unique identifier of the user.", False),
            ("Logon", "TEXT", "Logon name.", True),
            ("FirstName", "TEXT", "First name.", False),
            ("LastName", "TEXT", "Last name.", True),
        ],
    ),
    (
        "Cases",
        "cases",
        None,
        "case",
        "Cases: customer service issues.",
        [
            ("CaseId", "INTEGER", "Unique identifier of the case.", False),
            ("PrimaryCompanyId", "INTEGER", "The company that raised the case.", False),
            ("Description", "TEXT", "Description of the case.", True),
            ("Status", "TEXT", "Status (In Progress, Closed, ...).", False),
            ("Priority", "TEXT", "Priority (Low, Normal, High).", False),
        ],
    ),
    (
        "Communication",
        "communication",
        None,
        "comm",
        "Communications: tasks, appointments, calls and e-mails.",
        [
            ("CommunicationId", "INTEGER", "Unique identifier of the communication.", False),
            ("Type", "TEXT", "Type (Task, Appointment).", False),
            ("Action", "TEXT", "Action (PhoneOut, EmailOut, Meeting, ...).", True),
            ("Subject", "TEXT", "Subject line.", True),
            ("Note", "TEXT", "Free-text note.", False),
        ],
    ),
]

AUDIT_FIELDS: list[tuple[str, str, str]] = [
    ("CreatedBy", "INTEGER", "User who created the record."),
    ("CreatedDate", "DATETIME", "When the record was created (server time zone)."),
    ("UpdatedBy", "INTEGER", "User who last updated the record."),
    ("UpdatedDate", "DATETIME", "When the record was last updated (server time zone)."),
    ("Deleted", "INTEGER", "Soft-delete flag: 1 when the record is deleted."),
]


def _table(
    entity: str,
    name: str,
    alias: str | None,
    prefix: str,
    description: str,
    fields: list[tuple[str, str, str, bool]],
) -> dict[str, Any]:
    key_field = fields[0][0]
    columns: list[dict[str, Any]] = []
    for field, type_, text, required in fields:
        api_name = f"{prefix}_{field}".lower()
        is_key = field == key_field
        columns.append(
            column(
                api_name,
                type_,
                [api_name],
                description=text,
                nullable=not is_key,
                read_only=is_key,
                required_on_create=required,
            )
        )
    for field, type_, text in AUDIT_FIELDS:
        api_name = f"{prefix}_{field}".lower()
        columns.append(column(api_name, type_, [api_name], description=text, read_only=True))
    key = f"{prefix}_{key_field}".lower()
    one = f"/{entity}('{{key}}')"
    # SData cannot filter on booleans or nulls; soft-delete is an integer flag.
    filterable = {
        c["name"]: TEXT_OPERATORS if c["type"] == "TEXT" else ORDERED_OPERATORS
        for c in columns
        if c["type"] in {"TEXT", "INTEGER", "DECIMAL", "DATE", "DATETIME"}
    }
    return {
        "name": name,
        "product": "sage_crm",
        "description": description,
        "aliases": [alias] if alias else [],
        "resource": entity,
        "module": "sagecrm2",
        "operations": {
            "list": {"method": "GET", "path": f"/{entity}", "envelope": None},
            "get": {"method": "GET", "path": one, "envelope": None},
            "create": {"method": "POST", "path": f"/{entity}", "envelope": None},
            "update": {"method": "PATCH", "path": one, "envelope": None},
            "delete": {"method": "DELETE", "path": one, "envelope": None},
        },
        "key": key,
        "updated_column": f"{prefix}_updateddate",
        "created_column": f"{prefix}_createddate",
        "deletions": None,
        "paging": {
            "style": "start_index",
            "max_page_size": MAX_PAGE_SIZE,
            "default_page_size": DEFAULT_PAGE_SIZE,
            "total": "envelope",
        },
        "fixed_parameters": {},
        "columns": columns,
        "pushdown": {
            "parameters": [],
            "expression": {
                "syntax": "sdata",
                "parameter": "where",
                "logical": ["AND", "OR", "NOT"],
                "columns": filterable,
            },
            "sort": {
                "parameter": "orderBy",
                "syntax": "sdata",
                "columns": [c["name"] for c in columns if c["type"] != "JSON"],
                "multiple": True,
            },
            # sagecrm2 has no documented field selection: every field is sent.
            "projection": None,
        },
        "children": [],
        "parent": None,
        "procedures": [],
    }


def build(reference: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Sage CRM product and its tables (``reference`` is unused: nothing is published)."""
    del reference
    product = {
        "product": "sage_crm",
        "title": "Sage CRM",
        "short_title": "Sage CRM",
        "connection_name": "SageCRM",
        "element_keys": ["sagecrm"],
        "api_version": "sagecrm2",
        "base_urls": {"default": "{server}/sdata/{install}j/sagecrm2/-"},
        "auth": {"type": "basic"},
        "headers": [],
        "error_format": "sdata_diagnoses",
        "procedures": [],
    }
    return product, [_table(*entity) for entity in ENTITIES]
