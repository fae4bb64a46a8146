"""Converters from partner text to contract values, with messages that say what a good value is.

Shared by every format so that "quantity" means the same thing in all of them. Each converter
raises :class:`FieldError` with an actionable message; parsers attach the location.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

AVAILABILITY_VALUES = ("in_stock", "out_of_stock", "preorder", "backorder", "discontinued")

_WHOLE = re.compile(r"[0-9]+")
DECIMAL_PATTERN = _DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
CURRENCY_PATTERN = _CURRENCY = re.compile(r"[A-Z]{3}")
#: 18 digits fits a signed 64-bit integer, which is what downstream consumers (Java, SQL) hold.
#: Plain ASCII digits up to this length are therefore quantities without further checks.
MAX_QUANTITY_DIGITS = 18
#: The largest quantity, sent or derived (a sum of locations or stores is bounded like its parts).
MAX_QUANTITY = 10**MAX_QUANTITY_DIGITS - 1


def total_too_large(total: int, what: str) -> str | None:
    """Why a derived quantity (``what``: "its locations", "its stores") cannot be published, if it can't."""
    if total <= MAX_QUANTITY:
        return None
    return (
        f"the sum of {what} ({total}) has more than {MAX_QUANTITY_DIGITS} digits; no quantity, sent or summed, "
        f"may exceed {MAX_QUANTITY}"
    )


class FieldError(ValueError):
    """A partner value that cannot become a contract value. ``str(err)`` is the message."""


def whole_number(raw: str | None) -> int:
    """A quantity: digits only after trimming. ``1,234`` is refused, not guessed."""
    if raw is not None and len(raw) <= MAX_QUANTITY_DIGITS and raw.isascii() and raw.isdigit():
        return int(raw)  # the common case; anything else goes through the checks below
    text = (raw or "").strip()
    if not text:
        raise FieldError("is empty; expected a whole number of units ≥ 0, e.g. 12")
    if _WHOLE.fullmatch(text):
        if len(text.lstrip("0")) > MAX_QUANTITY_DIGITS:
            raise FieldError(f"'{text[:40]}' is too large; expected at most {MAX_QUANTITY_DIGITS} digits")
        return int(text)
    if "," in text or (text.count(".") == 1 and re.fullmatch(r"[0-9]{1,3}(\.[0-9]{3})+", text)):
        raise FieldError(
            f"'{text}' is ambiguous (thousands separator or decimal mark?); "
            "send a plain whole number without separators, e.g. 1234"
        )
    if text.startswith("-") and _WHOLE.fullmatch(text[1:]):
        raise FieldError(f"'{text}' is negative; a quantity is a whole number of units ≥ 0")
    if _DECIMAL.fullmatch(text):
        raise FieldError(f"'{text}' is not a whole number; a quantity counts units, e.g. 12")
    raise FieldError(f"'{text}' is not a whole number; expected digits only, e.g. 12")


def decimal_amount(raw: str | None) -> str:
    """A price amount, kept as the partner wrote it (trimmed) so no float ever rounds it."""
    text = (raw or "").strip()
    if not text:
        raise FieldError("is empty; expected a decimal amount such as 19.99")
    if _DECIMAL.fullmatch(text):
        return text
    if "," in text:
        raise FieldError(f"'{text}' uses a comma; use a dot as the decimal mark and no separators, e.g. 1234.50")
    raise FieldError(f"'{text}' is not a decimal amount ≥ 0; expected e.g. 19.99")


def currency_code(raw: str | None) -> str:
    """An ISO 4217 code: three capital letters (``usd`` is normalised to ``USD``)."""
    text = (raw or "").strip().upper()
    if not _CURRENCY.fullmatch(text):
        shown = (raw or "").strip()
        raise FieldError(f"'{shown}' is not an ISO 4217 currency code; expected three letters such as USD or EUR")
    return text


def availability(raw: str | None) -> str:
    """One of the contract's availability values; case and surrounding space are forgiven."""
    text = (raw or "").strip().lower()
    if text in AVAILABILITY_VALUES:
        return text
    allowed = ", ".join(AVAILABILITY_VALUES)
    raise FieldError(f"'{(raw or '').strip()}' is not a known availability; expected one of {allowed}")


def timestamp(raw: str | None) -> datetime:
    """An ISO 8601 timestamp with a timezone, returned in UTC.

    A timestamp without a zone is refused: guessing one would silently shift every ``asOf``
    and could let an older snapshot overwrite a newer one.
    """
    text = (raw or "").strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(f"'{text}' is not an ISO 8601 timestamp; expected e.g. 2026-11-20T06:00:00Z") from None
    if parsed.tzinfo is None:
        raise FieldError(f"'{text}' has no timezone; add one, e.g. 2026-11-20T06:00:00Z")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise FieldError(f"'{text}' is out of range in UTC; send a real date, e.g. 2026-11-20T06:00:00Z") from None


def text_value(raw: str | None) -> str | None:
    """Free text: trimmed, and ``None`` when blank so an empty element means "not given"."""
    if raw is None:
        return None
    text = raw.strip()
    return text or None
