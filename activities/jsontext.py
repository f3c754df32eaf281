"""Activity records as JSON text: Decimals keep their exact digits, dates are ISO 8601.

The one encoder of the activities' output, for the CLI's JSON lines and the service's
HTTP answers alike.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def to_json(value: Any) -> str:
    """Compact JSON; a Decimal keeps its exact digits as a JSON number."""
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                f"{json.dumps(str(k), ensure_ascii=False)}:{to_json(v)}" for k, v in value.items()
            )
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    if isinstance(value, (date, datetime)):
        return json.dumps(value.isoformat())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)
