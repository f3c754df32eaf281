"""Answering SQL from a replica: ``sagesql query --replica URL "SELECT ..."``, nothing sent to Sage.

The reading lives in ``engine/replica.py`` (the DB-API's ``Offline=True`` answers with it
too); this is the name the CLI and replication use.
"""

from __future__ import annotations

from sagesql.engine.replica import answer, explain

__all__ = ["answer", "explain"]
