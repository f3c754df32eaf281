"""Replication: a copy of Sage tables kept in step in a database of one's own (``sagesql sync``).

``sync.Replicator`` reads each table through the poller's frozen window
(``activities.polling``) and writes what it read into a ``targets.Target``: SQLite
(sqlite-utils) or PostgreSQL (psycopg). ``state.SyncState`` is the position, kept in
the target itself and committed with the rows it covers. ``statements`` reads the
``REPLICATE`` and ``CACHE`` statements; ``offline`` answers SQL from a replica.
"""
