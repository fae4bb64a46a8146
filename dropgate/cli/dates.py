"""``--since``: a moment a person types, parsed as a moment and written as the ledger writes its own.

The ledger's ``updatedAt`` is an ISO instant in UTC with milliseconds (``2026-12-06T14:10:48.123Z``)
and its index compares strings, so a filter only works if it is written the same way: ``yesterday``
compared as a string matched nothing, and ``2026-12-06T15:00+01:00`` would compare in the wrong zone.
Anything that is not a moment is a usage error (exit 2) that says what is accepted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer

from dropgate.terminal import shown

#: What ``--since DATE`` accepts, for each option's help.
SINCE_FORMS = (
    "an ISO date or time (2026-12-01, 2026-12-01T08:00, 2026-12-01T08:00+01:00; UTC unless it says), "
    "today, yesterday, or an age (7d, 12h, 30m)"
)
_AGE = re.compile(r"(\d{1,6})([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(text: str, *, now: datetime | None = None) -> str:
    """``text`` as the ledger's timestamps write a moment; :class:`typer.BadParameter` if it is none."""
    try:
        moment = _moment(text.strip(), now or datetime.now(UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # not a moment, or one before year 1
        raise typer.BadParameter(
            f"'{shown(text, limit=40)}' is not a date: give an ISO date or time (2026-12-01, "
            "2026-12-01T08:00Z), today, yesterday, or an age (7d, 12h, 30m)"
        ) from None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moment(text: str, now: datetime) -> datetime:
    """ValueError if ``text`` is no moment; OverflowError if it is one before year 1."""
    word = text.lower()
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "today":
        return midnight
    if word == "yesterday":
        return midnight - timedelta(days=1)
    age = _AGE.fullmatch(word)
    if age:
        return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
