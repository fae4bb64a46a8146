"""The v1 contract: validation, deterministic serialization, the checked-in JSON Schema."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from dropgate import events
from dropgate.events import ProductState, SplitValue
from tests.conftest import REPO

SHA = hashlib.sha256(b"file").hexdigest()


def state(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "productId": "P1",
        "partnerId": "acme",
        "sku": "S1",
        "name": "Widget",
        "quantity": 3,
        "availability": "in_stock",
        "price": {"amount": "1.50", "currency": "USD"},
        "locations": [{"locationId": "A", "quantity": 1}, {"locationId": "B", "quantity": 2}],
        "asOf": datetime(2026, 11, 20, 6, 0, tzinfo=UTC),
        "source": {"bucket": "b", "key": "acme/x.xml", "versionId": "v1", "sha256": SHA, "record": 1},
        "parser": {"name": "generic-xml", "version": "1"},
    }
    data.update(overrides)
    return data


def test_split_value_equals_the_plain_serialization() -> None:
    model = ProductState.model_validate(state())
    split = events.serialize(model)
    assert split.complete(SHA) == orjson.dumps(model.model_dump(mode="json"))


def test_value_layout_is_fixed_camel_case_and_has_no_wall_clock() -> None:
    value = events.serialize(ProductState.model_validate(state())).complete(SHA)
    assert value.startswith(b'{"schemaVersion":1,"productId":"P1","partnerId":"acme","sku":"S1"')
    decoded = json.loads(value)
    assert list(decoded) == [
        "schemaVersion",
        "productId",
        "partnerId",
        "sku",
        "name",
        "quantity",
        "availability",
        "price",
        "locations",
        "asOf",
        "source",
        "parser",
    ]
    assert decoded["asOf"] == "2026-11-20T06:00:00Z"
    assert decoded["source"] == {"bucket": "b", "key": "acme/x.xml", "versionId": "v1", "sha256": SHA, "record": 1}


def test_same_input_gives_byte_identical_values() -> None:
    first = events.serialize(ProductState.model_validate(state())).complete(SHA)
    second = events.serialize(ProductState.model_validate(state())).complete(SHA)
    assert first == second


def test_as_of_is_normalised_to_utc() -> None:
    from datetime import timedelta, timezone

    local = datetime(2026, 11, 20, 8, 0, tzinfo=timezone(timedelta(hours=2)))
    value = json.loads(events.serialize(ProductState.model_validate(state(asOf=local))).complete(SHA))
    assert value["asOf"] == "2026-11-20T06:00:00Z"


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"quantity": -1}, "greater than or equal to 0"),
        ({"quantity": 4}, "does not equal the sum of locations 3"),
        ({"availability": "maybe"}, "Input should be"),
        ({"productId": ""}, "at least 1 character"),
        ({"productId": " P1"}, "surrounding whitespace"),
        ({"price": {"amount": "1,5", "currency": "USD"}}, "String should match pattern"),
        ({"locations": [{"locationId": "B", "quantity": 1}, {"locationId": "A", "quantity": 2}]}, "sorted"),
        ({"asOf": datetime(2026, 1, 1)}, "timezone"),
        ({"color": "blue"}, "Extra inputs are not permitted"),
    ],
)
def test_contract_refuses_invalid_states(override: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ProductState.model_validate(state(**override))


def test_keys_follow_the_partner_template() -> None:
    assert events.render_key("{productId}", product_id="P1", partner_id="acme") == b"P1"
    assert events.render_key("{partnerId}:{productId}", product_id="P1", partner_id="acme") == b"acme:P1"


def test_event_id_depends_on_key_and_value_only() -> None:
    assert events.event_id(b"k", b"v") == events.event_id(b"k", b"v")
    assert events.event_id(b"k", b"v") != events.event_id(b"k", None)
    assert events.event_id(b"k", b"v") != events.event_id(b"kv", b"")


def test_checked_in_json_schema_matches_the_model() -> None:
    """If this fails, the contract changed: regenerate with `make schema` and review the diff."""
    checked_in = json.loads((REPO / "schemas" / "inventory.product-state.v1.json").read_text())
    assert checked_in == events.json_schema()


def test_schema_validates_a_real_value() -> None:
    import jsonschema

    value = json.loads(events.serialize(ProductState.model_validate(state())).complete(SHA))
    jsonschema.validate(value, events.json_schema())


def test_the_per_file_fast_path_is_byte_identical_to_the_model() -> None:
    """The ingest path serializes without a model per record; it must never differ from the contract."""
    import io
    from datetime import timedelta, timezone

    from dropgate.events import FileSerializer
    from parsers.base import Record
    from parsers.generic import GenericInventoryParser
    from tests.conftest import GENERIC

    as_of = datetime(2026, 11, 20, 8, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2)))
    fast = FileSerializer(
        partner_id="acme",
        as_of=as_of,
        bucket=None,
        key="a/b c.xml",
        version_id=None,
        parser_name="generic-xml",
        parser_version="1",
    )
    records = []
    for path in (GENERIC / "good").glob("*.xml"):
        records += [i for i in GenericInventoryParser().parse(io.BytesIO(path.read_bytes())) if isinstance(i, Record)]
    records = [r for r in records if r.fields is not None]
    assert len(records) >= 6
    for record in records:
        assert record.fields is not None
        model = ProductState.model_validate(
            {
                "productId": record.product_id,
                "partnerId": "acme",
                **record.fields,
                "asOf": as_of,
                "source": {
                    "bucket": None,
                    "key": "a/b c.xml",
                    "versionId": None,
                    "sha256": SHA,
                    "record": record.index,
                },
                "parser": {"name": "generic-xml", "version": "1"},
            }
        )
        expected, got = events.serialize(model), fast.serialize(record.product_id, record.fields, record.index)
        assert got.complete(SHA) == expected.complete(SHA)
        assert (got.as_of_ms, got.state, got.fields) == (expected.as_of_ms, expected.state, expected.fields)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"quantity": -1, "availability": "in_stock"}, "greater than or equal to 0"),
        (
            {"quantity": 4, "availability": "in_stock", "locations": [{"locationId": "A", "quantity": 3}]},
            "sum of locations 3",
        ),
        ({"availability": "maybe"}, "Input should be"),
        ({"availability": "in_stock", "colour": "red"}, "Extra inputs are not permitted"),
        ({"availability": "in_stock", "price": {"amount": "1,5", "currency": "USD"}}, "String should match pattern"),
    ],
)
def test_the_fast_path_refuses_what_the_model_refuses(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        _serializer().serialize("P1", fields, 1)


def _serializer(*, state_hashes: bool = True) -> Any:
    from dropgate.events import FileSerializer

    return FileSerializer(
        partner_id="acme",
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
        bucket="b",
        key="k",
        version_id="v",
        parser_name="p",
        parser_version="1",
        state_hashes=state_hashes,
    )


def test_without_state_hashes_the_bytes_are_the_same_and_the_hashes_left_out() -> None:
    """Local runs skip the guard's hashes; the event itself must not change."""
    from dropgate.events import NO_FIELD_HASHES

    fields = {"quantity": 3, "availability": "in_stock", "locations": [{"locationId": "A", "quantity": 3}]}
    with_hashes = _serializer(state_hashes=True).serialize("P1", fields, 1)
    without = _serializer(state_hashes=False).serialize("P1", fields, 1)
    assert without.complete(SHA) == with_hashes.complete(SHA)
    assert with_hashes.state != 0 and with_hashes.fields != NO_FIELD_HASHES
    assert (without.state, without.fields) == (0, NO_FIELD_HASHES)


def test_the_fast_path_knows_every_availability_of_the_contract() -> None:
    from typing import get_args, get_type_hints

    from dropgate.events import Availability, _StateFields

    allowed = get_args(get_type_hints(_StateFields)["availability"])
    assert set(allowed) == {a.value for a in Availability}


def test_the_guards_hashes_are_the_ones_stored_indexes_hold() -> None:
    """Key indexes in S3 hold these hashes (``--changed-only`` compares a file's against them): a
    change to how they are computed would make every stored key look changed. Pinned values."""
    from dropgate.events import FileSerializer
    from dropgate.key_index import key_hash

    serializer = FileSerializer(
        partner_id="acme",
        as_of=datetime(2026, 11, 20, tzinfo=UTC),
        bucket="drop",
        key="acme/f.xml",
        version_id=None,
        parser_name="generic-xml",
        parser_version="1",
    )
    full = {
        "sku": "ACME-1",
        "name": "Ladder “Deluxe” 3m",
        "quantity": 7,
        "availability": "in_stock",
        "price": {"amount": "12.50", "currency": "EUR"},
        "locations": [{"locationId": "S1", "quantity": 3}, {"locationId": "S2", "quantity": 4}],
    }
    bare = {"availability": "discontinued"}
    for fields, state, per_field in (
        (full, 12610389744373368804, (7007, 2519, 19074, 65399, 11285, 37888)),
        (bare, 14186801349394955809, (64591, 64591, 64591, 33082, 64591, 47913)),
    ):
        for value in (serializer.serialize("P1", fields, 1), _model_value(fields)):
            assert (value.state, value.fields) == (state, per_field)
    assert key_hash(b"P0000001") == 17218399386105072713


def _model_value(fields: dict[str, object]) -> SplitValue:
    from dropgate.events import serialize

    return serialize(
        ProductState.model_validate(
            {
                "productId": "P1",
                "partnerId": "acme",
                **fields,
                "asOf": datetime(2026, 11, 20, tzinfo=UTC),
                "source": {"bucket": "drop", "key": "acme/f.xml", "versionId": None, "sha256": SHA, "record": 1},
                "parser": {"name": "generic-xml", "version": "1"},
            }
        )
    )
