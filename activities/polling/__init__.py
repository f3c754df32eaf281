"""Polling: change events from every table, delivered without loss.

Sage Accounting, Sage 200 and Sage CRM have no usable webhooks, so integrations learn
about change by polling. ``sagesql poll`` (and this package) reads each configured
table over a frozen window of its updated-date column, turns new rows into CREATED,
UPDATED and DELETED events, writes them to a durable outbox in the same transaction
that advances the watermark, and delivers them in order to a webhook, a JSON lines
file or standard output.

The modules, in the order a change travels:

=================  ==============================================================
config, instance   the native TOML/JSON configuration; the platforms' instance JSON
loading            a configuration file, whichever of the two it is
javadate           Java date patterns of the platforms' placeholders
timeparse          durations and instants as configuration writes them
tables             configured names resolved to tables and checked
clock              the server's "now", from the Date header
window             the frozen window's queries (same planner as sagesql query)
events             events, their stable ids, messages of up to ten
poller             a cycle: window, deletions, snapshots -> outbox
state              the state store interface
sqlite_state       the default state store (SQLite)
sinks              webhook (signed), JSON lines, stdout
deliverer          in-order delivery, backoff with jitter, dead letters
runner             the loop, the lock, status / replay / reset
=================  ==============================================================
"""

from __future__ import annotations

from sagesql.activities.polling.config import PollConfig
from sagesql.activities.polling.deliverer import Deliverer
from sagesql.activities.polling.loading import load
from sagesql.activities.polling.poller import Poller
from sagesql.activities.polling.runner import replay, reset, run, status
from sagesql.activities.polling.sqlite_state import SQLiteStateStore
from sagesql.activities.polling.state import StateStore

__all__ = [
    "Deliverer",
    "PollConfig",
    "Poller",
    "SQLiteStateStore",
    "StateStore",
    "load",
    "replay",
    "reset",
    "run",
    "status",
]
