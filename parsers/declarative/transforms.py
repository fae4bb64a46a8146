"""What a declarative field's value goes through: the transforms a spec may name, then the contract conversion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from parsers import fields
from parsers.fields import FieldError

#: Contract fields a format may map, in the order they are read. ``currency`` is the price's.
FIELD_NAMES = ("productId", "sku", "name", "quantity", "availability", "price", "currency")
TRANSFORMS = ("trim", "lower", "upper", "integer", "decimal", "currency", "price")
TEXT_TRANSFORMS = ("trim", "lower", "upper")
#: Transforms that turn text into a contract value: the only field each is valid on, and what it makes.
CONVERTING = {
    "integer": ("quantity", "a whole number"),
    "decimal": ("price", "a decimal amount"),
    "currency": ("currency", "an ISO 4217 currency code"),
    "price": ("price", "an amount and a currency from a value such as '15.00 USD'"),
}


class SubfieldError(FieldError):
    """A conversion error that belongs to a sub-field (``price.currency``) rather than the field itself."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def apply_transform(name: str, value: Any) -> Any:
    if name == "trim":
        return value.strip()
    if name == "lower":
        return value.lower()
    if name == "upper":
        return value.upper()
    if name == "integer":
        return quantity_value(value)
    if name == "decimal":
        return fields.decimal_amount(value)
    if name == "currency":
        return fields.currency_code(value)
    return _price_pair(value)


def quantity_value(value: Any) -> int:
    return value if isinstance(value, int) else fields.whole_number(value)


def _price_pair(value: Any) -> tuple[str, str]:
    """``15.00 USD`` or ``USD 15.00`` → (amount, currency)."""
    if isinstance(value, tuple):
        return cast(tuple[str, str], value)
    parts = str(value).split()
    if len(parts) != 2:
        raise FieldError(
            f"'{str(value).strip()}' is not a price with its currency; expected an amount and an ISO 4217 code "
            "separated by a space, e.g. 15.00 USD"
        )
    amount, currency = (parts[1], parts[0]) if parts[0].isalpha() else (parts[0], parts[1])
    try:
        currency = fields.currency_code(currency)
    except FieldError as error:
        raise SubfieldError("price.currency", f"price.currency {error}") from None
    return fields.decimal_amount(amount), currency


def _amount(value: Any) -> Any:
    return value if isinstance(value, tuple) else fields.decimal_amount(value)


def _currency(value: Any) -> str:
    return fields.currency_code(value)


def _availability_value(value: Any) -> str:
    return fields.availability(value)


#: The contract conversion each field's value goes through last (after transforms and map).
FINISH: dict[str, Callable[[Any], Any]] = {
    "productId": fields.text_value,
    "sku": fields.text_value,
    "name": fields.text_value,
    "quantity": quantity_value,
    "availability": _availability_value,
    "price": _amount,
    "currency": _currency,
}
