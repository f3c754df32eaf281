"""Change events: what changed (CREATED, UPDATED, DELETED), their stable ids, and their messages.

An event is one change of one row: the table's name as configured (``objectType``),
the row's id (``objectId``), the kind, the time the API gives the change (the
updated or deleted date, as stored by the engine: ``eventDate``) and ``raw``, the
record as the API returned it (its own field names, nested objects and links as the
list sent them; for a line table the line). A DELETED event's ``raw`` is what the
API said of the deletion: Accounting's ``deleted_since`` record; for an id set
compared (Sage 200, CRM: no deletion feed) the key as the API spells it
(``{"id": 12}``, ``{"comp_companyid": 7}``), since a vanished record cannot be read.
Its ``eventId`` is a UUID derived from (instance, table, key, kind of mark, time), so
the same change polled twice (after a crash, a lookback, a ``poll reset``) gets the
same id and receivers can dedupe by it.

Events are grouped into messages of at most ten events of one table, in the order
they were polled; a message's id derives from its events' ids. A message goes out
in the integration platforms' notification shape::

    {"message": {"eventId", "instanceId", "instanceName", "elementKey",
                 "events": [{"eventType", "objectType", "objectId", "eventDate",
                             "elementKey", "eventId"}],
                 "raw": {"<objectType>": [record, ...]}}}

or as JSON lines, one plain event per line (:func:`plain_lines`).

CREATED or UPDATED: a row whose created and updated times lie within the tolerance
of each other was created by the change, otherwise updated. A row created and then
edited before the poller saw it is therefore UPDATED (its first version was never
visible); without a created-date column the kind is UNKNOWN, the platforms' word
for it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

CREATED, UPDATED, DELETED, UNKNOWN = "CREATED", "UPDATED", "DELETED", "UNKNOWN"
MAX_EVENTS_PER_MESSAGE = 10

# Marks say which watermark a change belongs to: row updates, deletions, snapshot diffs.
MARK_UPDATE, MARK_DELETE, MARK_SNAPSHOT = "U", "D", "S"

_NAMESPACE = uuid.UUID("6f1f8f5e-6a64-4a8b-9e2c-5a9d2f3c7b10")


def event_id(instance: str, table: str, key: str, mark: str, stamp: str) -> str:
    """The stable id of one change."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(("event", instance, table, key, mark, stamp))))


def classify(created: datetime | None, updated: datetime | None, tolerance: timedelta) -> str:
    """CREATED when created and updated lie within the tolerance, UPDATED otherwise."""
    if created is None or updated is None:
        return UNKNOWN
    return CREATED if abs(updated - created) <= tolerance else UPDATED


def json_value(value: Any) -> Any:
    """A row value as JSON: Decimal as a number (a whole one as an int, whatever its
    scale: 7800.00 is 7800, so that a record's content hash does not depend on how
    many places a result gives), dates as ISO text."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            return float(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Event:
    """One change of one row."""

    table: str  # objectType: the table's name in the configuration
    kind: str  # CREATED | UPDATED | DELETED | UNKNOWN
    object_id: str  # the row's id (idField)
    key: str  # the table's key, for dedupe and cursors (usually the same as object_id)
    mark: str  # MARK_UPDATE, MARK_DELETE or MARK_SNAPSHOT
    stamp: str  # the change's time as the API gives it (or a content hash for snapshots)
    date: str  # eventDate
    raw: Mapping[str, Any] = field(default_factory=dict)  # the record as the API sent it
    event_id: str = ""

    def plain(self) -> dict[str, Any]:
        """The event as stored in the outbox and written as a JSON line."""
        return {
            "eventId": self.event_id,
            "eventType": self.kind,
            "objectType": self.table,
            "objectId": self.object_id,
            "eventDate": self.date,
            "raw": dict(self.raw),
        }


def make_event(
    instance: str,
    table: str,
    kind: str,
    *,
    object_id: Any,
    key: Any,
    mark: str,
    stamp: str,
    date: str,
    raw: Mapping[str, Any],
) -> Event:
    """An event; ``raw`` must hold JSON values (the API's record does)."""
    key_text = str(key)
    return Event(
        table=table,
        kind=kind,
        object_id=str(object_id),
        key=key_text,
        mark=mark,
        stamp=stamp,
        date=date,
        raw=raw,
        event_id=event_id(instance, table, key_text, mark, stamp),
    )


@dataclass(frozen=True)
class Message:
    """Up to ten events of one table, delivered together."""

    message_id: str
    table: str
    events: tuple[dict[str, Any], ...]  # plain events


def batch(
    instance: str, table: str, events: Iterable[Event], size: int = MAX_EVENTS_PER_MESSAGE
) -> list[Message]:
    """The events in messages of at most ``size`` (at most ten), in order."""
    size = max(1, min(size, MAX_EVENTS_PER_MESSAGE))
    out: list[Message] = []
    group: list[Event] = []
    for event in events:
        group.append(event)
        if len(group) == size:
            out.append(_message(instance, table, group))
            group = []
    if group:
        out.append(_message(instance, table, group))
    return out


def _message(instance: str, table: str, events: Sequence[Event]) -> Message:
    ids = "\x1f".join(e.event_id for e in events)
    message_id = str(uuid.uuid5(_NAMESPACE, f"message\x1f{instance}\x1f{table}\x1f{ids}"))
    return Message(message_id, table, tuple(e.plain() for e in events))


@dataclass(frozen=True)
class Origin:
    """Who sends: the instance (as the platform names it) and the product's element key."""

    instance_id: str
    instance_name: str
    element_key: str


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=json_value)


def platform_body(
    message_id: str, table: str, events: Sequence[Mapping[str, Any]], origin: Origin
) -> bytes:
    """The notification the integration platforms send for polled events (bytes as signed)."""
    body = {
        "message": {
            "eventId": message_id,
            "instanceId": origin.instance_id,
            "instanceName": origin.instance_name,
            "elementKey": origin.element_key,
            "events": [
                {
                    "eventType": e["eventType"],
                    "objectType": e["objectType"],
                    "objectId": e["objectId"],
                    "eventDate": e["eventDate"],
                    "elementKey": origin.element_key,
                    "eventId": e["eventId"],
                }
                for e in events
            ],
            "raw": {table: [raw_of(e) for e in events]},
        }
    }
    return dumps(body).encode("utf-8")


def raw_of(event: Mapping[str, Any]) -> Any:
    """A stored event's record (outboxes written before ``raw`` held the SQL row, as
    ``record``: those messages go out as they were polled)."""
    return event.get("raw", event.get("record", {}))


def plain_lines(message_id: str, events: Sequence[Mapping[str, Any]], origin: Origin) -> list[str]:
    """One JSON line per event: the plain event with its message and instance."""
    return [dumps({**e, "messageId": message_id, "instanceId": origin.instance_id}) for e in events]
