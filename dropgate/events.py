"""Event contract v1: ``inventory.product-state.v1``.

The pydantic model is the contract: every record is validated against it before anything is
published (except what a parser's plain path read on the parallel path, which that path accepts
only in the contract's normal form: see ``FileSerializer.serialize_plain``), and the JSON Schema in
``schemas/`` is generated from it (a test fails if they drift).

Values are serialized deterministically: a fixed field order, no wall-clock time, no floats
(amounts are decimal strings), so the same file through the same parser version gives
byte-identical values, and a republish changes nothing downstream.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,  # pydantic needs these on Python < 3.12
)

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_serializer,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from dropgate.key_index import TRACKED_FIELDS, state_hashes
from parsers.fields import MAX_QUANTITY

SCHEMA_NAME = "inventory.product-state.v1"
#: The JSON Schema's ``$id`` (and CloudEvents' ``dataschema``).
SCHEMA_ID = f"urn:dropgate:schema:{SCHEMA_NAME}"
SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"


class Availability(StrEnum):
    in_stock = "in_stock"
    out_of_stock = "out_of_stock"
    preorder = "preorder"
    backorder = "backorder"
    discontinued = "discontinued"


class _Strict(BaseModel):
    # Built on first use: the hot path validates with a TypeAdapter (below), so the models are only
    # needed for the JSON Schema and single events, and building them would cost every cold start.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False, defer_build=True)


class Price(_Strict):
    amount: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?$", description="Decimal string, never a float.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")


class Location(_Strict):
    locationId: str = Field(min_length=1)
    quantity: int = Field(ge=0, le=MAX_QUANTITY)


class Source(_Strict):
    """Lineage: which file and which record produced this state."""

    bucket: str | None
    key: str
    versionId: str | None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    record: int = Field(ge=1, description="1-based position of the product in the file.")


class ParserRef(_Strict):
    name: str
    version: str


class ProductState(_Strict):
    """The whole current inventory state of one product (not a delta)."""

    schemaVersion: Literal[1] = 1
    productId: str = Field(min_length=1)
    partnerId: str = Field(min_length=1)
    sku: str | None = None
    name: str | None = None
    quantity: int | None = Field(default=None, ge=0, le=MAX_QUANTITY)
    availability: Availability
    price: Price | None = None
    locations: list[Location] = Field(default_factory=list)
    asOf: datetime = Field(description="The partner's snapshot time in UTC, else the object's upload time.")
    source: Source
    parser: ParserRef

    @field_validator("productId")
    @classmethod
    def _stripped(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("productId must not have surrounding whitespace")
        return value

    @field_validator("asOf")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("asOf must carry a timezone")
        return value.astimezone(UTC)

    @field_serializer("asOf")
    def _iso_z(self, value: datetime) -> str:
        return format_timestamp(value)

    @model_validator(mode="after")
    def _locations_consistent(self) -> ProductState:
        ids = [loc.locationId for loc in self.locations]
        if ids != sorted(set(ids)):
            raise ValueError("locations must be unique and sorted by locationId")
        if self.locations and self.quantity is not None:
            total = sum(loc.quantity for loc in self.locations)
            if total != self.quantity:
                raise ValueError(f"quantity {self.quantity} does not equal the sum of locations {total}")
        return self


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; sub-second digits only when the partner sent them."""
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an event value, as checked into ``schemas/``."""
    schema = ProductState.model_json_schema()
    schema["$id"] = SCHEMA_ID
    schema["title"] = SCHEMA_NAME
    return schema


def render_key(template: str, *, product_id: str, partner_id: str) -> bytes:
    """The Kafka key: ``{productId}`` by default, ``{partnerId}:{productId}`` where ids collide."""
    if template == "{productId}":
        return product_id.encode()  # the default, once per event: no formatting needed
    return template.format(productId=product_id, partnerId=partner_id).encode()


#: Field hashes of an event the guard does not read (and of a tombstone).
NO_FIELD_HASHES = (0,) * len(TRACKED_FIELDS)


class SplitValue:
    """A serialized value with a hole where the file's sha256 goes, plus what the guard needs.

    The sha256 of the whole file is only known once the last byte has been read, but values are
    built (and spooled) while streaming. Serializing ``source.sha256`` last inside a fixed layout
    lets the publisher fill it in without re-serializing: ``head + sha256 + tail``.
    ``as_of_ms``, ``state`` and ``fields`` feed the stale-overwrite guard (see ``key_index``).
    """

    __slots__ = ("as_of_ms", "fields", "head", "state", "tail")

    def __init__(
        self, head: bytes, tail: bytes, as_of_ms: int = 0, state: int = 0, fields: tuple[int, ...] = NO_FIELD_HASHES
    ) -> None:
        self.head = head
        self.tail = tail
        self.as_of_ms = as_of_ms
        self.state = state
        self.fields = fields

    def complete(self, sha256: str) -> bytes:
        return self.head + sha256.encode() + self.tail


_PLACEHOLDER_SHA = "0" * 64


def serialize(state: ProductState) -> SplitValue:
    """Deterministic JSON of a validated state, split around ``source.sha256``."""
    body = state.model_dump(mode="json", exclude={"source", "parser"})
    state_hash, field_hashes = state_hashes([orjson.dumps(body[name]) for name in TRACKED_FIELDS])
    source = state.source
    head = (
        orjson.dumps(body)[:-1]
        + b',"source":'
        + orjson.dumps({"bucket": source.bucket, "key": source.key, "versionId": source.versionId})[:-1]
        + b',"sha256":"'
    )
    tail = (
        b'","record":'
        + str(source.record).encode()
        + b'},"parser":'
        + orjson.dumps({"name": state.parser.name, "version": state.parser.version})
        + b"}"
    )
    return SplitValue(head, tail, epoch_ms(state.asOf), state_hash, field_hashes)


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def placeholder_sha() -> str:
    """A syntactically valid sha256 for validating a state before the file's hash is known."""
    return _PLACEHOLDER_SHA


def event_id(key: bytes, value: bytes | None) -> str:
    """``event-id`` header: sha256 over key and value, so identical states share an id."""
    digest = hashlib.sha256(key)
    digest.update(b"\x00")
    if value is not None:
        digest.update(value)
    return digest.hexdigest()


# -- the hot path: one file's events without a model per record ------------------------------------
#
# ProductState is the contract; building one per record (with its Python validators and serializer)
# costs more than parsing the record. For a file's records, a pydantic TypeAdapter over plain dicts
# checks the same constraints in Rust, the model's cross-field rules are checked in a few lines here,
# and what is constant per file (partner, asOf, lineage, parser) is serialized once. The bytes are
# identical to ``serialize(ProductState(...))``; a test holds them to it.


@with_config(ConfigDict(extra="forbid"))
class _LocationFields(TypedDict):
    locationId: Annotated[str, Field(min_length=1)]
    quantity: Annotated[int, Field(ge=0, strict=True)]


@with_config(ConfigDict(extra="forbid"))
class _PriceFields(TypedDict):
    amount: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


@with_config(ConfigDict(extra="forbid"))
class _StateFields(TypedDict):
    productId: Annotated[str, Field(min_length=1)]
    sku: NotRequired[str | None]
    name: NotRequired[str | None]
    quantity: NotRequired[Annotated[int, Field(ge=0, strict=True)] | None]
    availability: Literal["in_stock", "out_of_stock", "preorder", "backorder", "discontinued"]
    price: NotRequired[_PriceFields | None]
    locations: NotRequired[list[_LocationFields]]


@functools.cache
def _state_fields() -> TypeAdapter[_StateFields]:
    """Built on first use: building the validator is a noticeable share of importing the handler."""
    return TypeAdapter(_StateFields)


class FileSerializer:
    """Serializes one file's records: validated like ProductState, laid out byte for byte like it.

    ``state_hashes=False`` leaves out what only the stale-overwrite guard reads (a state hash and
    a hash per tracked field, about a third of the cost of an event); a run without a key index
    (a local file) has no use for them.
    """

    def __init__(
        self,
        *,
        partner_id: str,
        as_of: datetime,
        bucket: str | None,
        key: str,
        version_id: str | None,
        parser_name: str,
        parser_version: str,
        state_hashes: bool = True,
    ) -> None:
        self.partner_id = partner_id
        self.state_hashes = state_hashes
        self._validate = _state_fields().validate_python
        self._body_start = b'{"schemaVersion":' + orjson.dumps(SCHEMA_VERSION) + b',"productId":'
        self._partner_to_sku = b',"partnerId":' + orjson.dumps(partner_id) + b',"sku":'
        self.set_as_of(as_of)
        self._source_head = (
            b',"source":' + orjson.dumps({"bucket": bucket, "key": key, "versionId": version_id})[:-1] + b',"sha256":"'
        )
        self._parser_tail = b'},"parser":' + orjson.dumps({"name": parser_name, "version": parser_version}) + b"}"

    def set_as_of(self, as_of: datetime) -> None:
        if as_of.tzinfo is None:
            raise ValueError("asOf must carry a timezone")
        self.as_of_text = format_timestamp(as_of)
        self.as_of_ms = epoch_ms(as_of)
        self._as_of_json = b',"asOf":' + orjson.dumps(self.as_of_text)

    def serialize(self, product_id: str, fields: dict[str, Any], record: int) -> SplitValue:
        """Raises ``ValidationError`` (or ``ValueError`` for the cross-field rules) like the model would."""
        checked = self._validate({"productId": product_id, **fields})
        if product_id != product_id.strip():
            raise ValueError("productId must not have surrounding whitespace")
        # pydantic returns each TypedDict with exactly its declared keys, in declared order, which is
        # the contract's order: the validated price and locations serialize as they are.
        locations = checked.get("locations") or []
        quantity = checked.get("quantity")
        if locations:
            ids = [location["locationId"] for location in locations]
            if ids != sorted(set(ids)):
                raise ValueError("locations must be unique and sorted by locationId")
            total = sum(location["quantity"] for location in locations)
            if quantity is not None and total != quantity:
                raise ValueError(f"quantity {quantity} does not equal the sum of locations {total}")
        return self._split(product_id, checked.get("sku"), checked.get("name"), quantity, checked, locations, record)

    def serialize_plain(self, product_id: str, fields: dict[str, Any], record: int) -> SplitValue:
        """A record a parser's plain path read (``segment_records``): the same bytes as
        :meth:`serialize`, without validating again what that path accepts only when valid.

        The plain paths accept a product only when every field is already in the contract's normal
        form (a product id with no surrounding whitespace, digits for quantities, the enumeration's
        spellings, the decimal and currency patterns, locations unique, sorted and summing to the
        quantity), and build exactly the keys, in order, that validation would return; anything else
        goes to the checked path and this serializer's :meth:`serialize`. Validating again cost about
        a tenth of a parsing worker's time. Tests hold the two methods to the same bytes for every
        record the plain paths give (``tests/unit/test_generic_fast_path.py``)."""
        return self._split(
            product_id, fields["sku"], fields["name"], fields["quantity"], fields, fields["locations"], record
        )

    def _split(
        self,
        product_id: str,
        sku: str | None,
        name: str | None,
        quantity: int | None,
        values: Mapping[str, Any],
        locations: Sequence[Mapping[str, Any]],
        record: int,
    ) -> SplitValue:
        tail = b'","record":' + str(record).encode() + self._parser_tail
        availability, price = values["availability"], values.get("price")
        if not self.state_hashes:
            body = {
                "schemaVersion": SCHEMA_VERSION,
                "productId": product_id,
                "partnerId": self.partner_id,
                "sku": sku,
                "name": name,
                "quantity": quantity,
                "availability": availability,
                "price": price,
                "locations": locations,
                "asOf": self.as_of_text,
            }
            return SplitValue(orjson.dumps(body)[:-1] + self._source_head, tail, self.as_of_ms)
        # The guard hashes each tracked field's JSON, so each is serialized once and the head joined
        # from those parts: dumping the whole body as well cost a third of the hashing. The layout
        # is the one above (TRACKED_FIELDS' order is the contract's); tests hold the bytes equal.
        dumps = orjson.dumps
        parts = [dumps(sku), dumps(name), dumps(quantity), dumps(availability), dumps(price), dumps(locations)]
        head = b"".join(
            (
                self._body_start,
                dumps(product_id),
                self._partner_to_sku,
                parts[0],
                b',"name":',
                parts[1],
                b',"quantity":',
                parts[2],
                b',"availability":',
                parts[3],
                b',"price":',
                parts[4],
                b',"locations":',
                parts[5],
                self._as_of_json,
                self._source_head,
            )
        )
        state_hash, field_hashes = state_hashes(parts)
        return SplitValue(head, tail, self.as_of_ms, state_hash, field_hashes)
