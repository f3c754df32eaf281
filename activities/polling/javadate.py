"""Java date patterns (``yyyy-MM-dd'T'HH:mm:ss'Z'``): checked and applied to instants.

The integration platforms' poller configuration writes date formats the way Java's
``SimpleDateFormat`` / ``DateTimeFormatter`` do: runs of pattern letters, text in single
quotes (``''`` is a quote), everything else literal. Supported letters:

====  =============================================  =================================
G     era (AD)                                       y, u  year (yy: two digits)
M, L  month (M, MM numeric; MMM Jan; MMMM January)   d     day of month
D     day of year                                    E     day name (EEE Mon, EEEE Monday)
a     AM/PM                                          H     hour 0-23   k  hour 1-24
h     hour 1-12                                      K     hour 0-11   m  minute
s     second                                         S     fraction (SSS milliseconds)
z     zone name (UTC, CET)                           Z     +0000       X  Z, +00, +0000, +00:00
====  =============================================  =================================

Any other letter is an error naming it, so a typing mistake in an instance
configuration is reported when the configuration is read, not at the first poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sagesql.errors import ConfigurationError

_LETTERS = set("GyuMLdDEaHkhKmsSzZX")
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass(frozen=True)
class Pattern:
    """A compiled pattern: literal text and (letter, count) fields in order."""

    text: str
    parts: tuple[str | tuple[str, int], ...]

    def format(self, value: datetime) -> str:
        """The instant written in this pattern (in the instant's own time zone)."""
        return "".join(p if isinstance(p, str) else _field(value, *p) for p in self.parts)


def compile_pattern(text: str, *, what: str = "date format") -> Pattern:
    """The pattern of ``text``; ConfigurationError naming an unknown letter or open quote."""
    parts: list[str | tuple[str, int]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if text[i + 1 : i + 2] == "'":
                literal.append("'")
                i += 2
                continue
            end = i + 1
            quoted: list[str] = []
            while True:
                if end >= len(text):
                    raise ConfigurationError(
                        f"{what} {text!r}: a quote opened at position {i + 1} is not closed",
                        hint="quote literal text like 'T' and write '' for a quote",
                    )
                if text[end] == "'":
                    if text[end + 1 : end + 2] == "'":
                        quoted.append("'")
                        end += 2
                        continue
                    break
                quoted.append(text[end])
                end += 1
            literal.extend(quoted)
            i = end + 1
            continue
        if ch.isascii() and ch.isalpha():
            if ch not in _LETTERS:
                raise ConfigurationError(
                    f"{what} {text!r}: unknown pattern letter {ch!r} at position {i + 1}",
                    hint="use Java date pattern letters (yyyy MM dd HH mm ss SSS Z X) and "
                    "quote literal text like 'T'",
                )
            run = i
            while run < len(text) and text[run] == ch:
                run += 1
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((ch, run - i))
            i = run
            continue
        literal.append(ch)
        i += 1
    if literal:
        parts.append("".join(literal))
    return Pattern(text, tuple(parts))


def _offset(value: datetime) -> timedelta:
    return value.utcoffset() or timedelta(0)


def _zone(value: datetime, colon: bool, short: bool, z_for_utc: bool) -> str:
    offset = _offset(value)
    if z_for_utc and offset == timedelta(0):
        return "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    if short:
        return f"{sign}{hours:02d}" + (f"{rest:02d}" if rest else "")
    return f"{sign}{hours:02d}{':' if colon else ''}{rest:02d}"


def _field(value: datetime, letter: str, count: int) -> str:
    if letter == "G":
        return "AD"
    if letter in "yu":
        return f"{value.year % 100:02d}" if count == 2 else f"{value.year:0{count}d}"
    if letter in "ML":
        if count >= 4:
            return _MONTHS[value.month - 1]
        if count == 3:
            return _MONTHS[value.month - 1][:3]
        return f"{value.month:0{count}d}"
    if letter == "d":
        return f"{value.day:0{count}d}"
    if letter == "D":
        return f"{value.timetuple().tm_yday:0{count}d}"
    if letter == "E":
        name = _DAYS[value.weekday()]
        return name if count >= 4 else name[:3]
    if letter == "a":
        return "AM" if value.hour < 12 else "PM"
    if letter == "H":
        return f"{value.hour:0{count}d}"
    if letter == "k":
        return f"{value.hour or 24:0{count}d}"
    if letter == "h":
        return f"{(value.hour % 12) or 12:0{count}d}"
    if letter == "K":
        return f"{value.hour % 12:0{count}d}"
    if letter == "m":
        return f"{value.minute:0{count}d}"
    if letter == "s":
        return f"{value.second:0{count}d}"
    if letter == "S":
        digits = f"{value.microsecond:06d}"
        return digits[:count] if count <= 6 else digits + "0" * (count - 6)
    if letter == "z":
        name = value.tzname() or "UTC"
        return "UTC" if name in ("UTC+00:00", "GMT") else name
    if letter == "Z":
        return _zone(value, colon=count >= 4, short=False, z_for_utc=False)
    # X: ISO 8601 zone, Z for UTC
    return _zone(value, colon=count >= 3, short=count == 1, z_for_utc=True)
