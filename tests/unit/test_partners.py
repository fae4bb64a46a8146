from pathlib import Path

import pytest

from dropgate.partners import PartnerConfigError, PartnerDirectory
from tests.conftest import REPO


def test_repository_partners_load_and_route_by_prefix() -> None:
    partners = PartnerDirectory.from_yaml(
        "partners:\n  acme: {prefix: acme/, format: generic}\n  acme-eu: {prefix: acme-eu, format: generic}\n"
    )
    assert partners.for_key("acme-eu/x.xml").id == "acme-eu"  # type: ignore[union-attr]
    assert partners.for_key("acme/eu/x.xml").id == "acme"  # type: ignore[union-attr]
    assert partners.for_key("other/x.xml") is None
    assert PartnerDirectory.load(str(REPO / "partners.yaml")).get("globex").key_template == "{partnerId}:{productId}"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            "{prefix: acme/, format: csv}",
            "partner 'acme', field 'format': unknown format 'csv'; known formats: amazon-inventory, cxml-product-activity, "
            "generic, google-local-inventory, google-merchant",
        ),
        (
            "{prefix: acme/, format: generic, policy: lenient}",
            "partner 'acme', field 'policy': Input should be 'strict' or",
        ),
        (
            "{prefix: acme/, format: generic, snapshot: weekly}",
            "partner 'acme', field 'snapshot': Input should be 'full' or",
        ),
        (
            "{prefix: acme/, format: generic, hold_deletions: {fraction: 2}}",
            "partner 'acme', field 'hold_deletions.fraction': Input should be less than or equal to 1",
        ),
        (
            "{prefix: acme/, format: generic, hold_deletions: {minimum: -1}}",
            "partner 'acme', field 'hold_deletions.minimum': Input should be greater than or equal to 0",
        ),
        (
            "{prefix: acme/, format: generic, hold_deletions: {share: 0.5}}",
            "partner 'acme', field 'hold_deletions.share': Extra inputs are not permitted",
        ),
        (
            "{prefix: acme/, format: generic, key_template: '{sku}'}",
            "key_template '{sku}' uses {sku}; only the plain placeholders {productId} and {partnerId} are allowed",
        ),
        (
            "{prefix: acme/, format: generic, key_template: '{productId.__class__}'}",
            "uses {productId.__class__}; only the plain placeholders",
        ),
        (
            "{prefix: acme/, format: generic, key_template: '{productId:>3000000000}'}",
            "uses {productId:>3000000000}; only the plain placeholders",
        ),
        ("{prefix: acme/, format: generic, key_template: '{productId!r}'}", "uses {productId!r}; only the plain"),
        ("{prefix: acme/, format: generic, key_template: '{productId.nope}'}", "uses {productId.nope}; only the"),
        ("{prefix: acme/, format: generic, key_template: '{productId'}", "is not a template"),
        (
            "{prefix: dropgate-state/, format: generic}",
            "prefix 'dropgate-state/' lies inside dropgate-state/, where dropgate keeps its own objects",
        ),
        ("{prefix: quarantine/acme, format: generic}", "lies inside quarantine/, where dropgate keeps its own"),
        ("{prefix: ../acme, format: generic}", "must be a relative key prefix of plain segments"),
        ("{prefix: 'acme//x', format: generic}", "must be a relative key prefix of plain segments"),
        ('{prefix: "acme\\e[31m", format: generic}', "must be a relative key prefix of plain segments"),
        (
            "{prefix: acme/, format: generic, colour: red}",
            "partner 'acme', field 'colour': Extra inputs are not permitted",
        ),
        ("{format: generic}", "partner 'acme', field 'prefix': Field required"),
        ("{prefix: acme/, format: generic, limits: {max_cats: 3}}", "unknown limit(s) max_cats; known:"),
        (
            "{prefix: acme/, format: cxml-product-activity, cxml: {available_quantity: [UnrestrictedUse]}}",
            "partner 'acme', field 'cxml.available_quantity': 'UnrestrictedUse' is not a cXML Inventory quantity "
            "type; available_quantity accepts UnrestrictedUseQuantity and StockOnHandQuantity",
        ),
        (
            "{prefix: acme/, format: cxml-product-activity, "
            "cxml: {available_quantity: [UnrestrictedUseQuantity, BlockedQuantity]}}",
            "partner 'acme', field 'cxml.available_quantity': BlockedQuantity is blocked stock: a shopper cannot buy it",
        ),
        (
            "{prefix: acme/, format: cxml-product-activity, cxml: {available_quantity: []}}",
            "partner 'acme', field 'cxml.available_quantity': name at least one quantity type",
        ),
        (
            "{prefix: acme/, format: cxml-product-activity, cxml: {available: [StockOnHandQuantity]}}",
            "partner 'acme', field 'cxml.available': Extra inputs are not permitted",
        ),
        (
            "{prefix: acme/, format: generic, cxml: {available_quantity: [StockOnHandQuantity]}}",
            "partner 'acme': cxml options apply only to format cxml-product-activity, and this partner's is 'generic'",
        ),
    ],
)
def test_bad_configuration_names_partner_field_and_what_is_allowed(entry: str, says: str) -> None:
    with pytest.raises(PartnerConfigError) as raised:
        PartnerDirectory.from_yaml(f"partners:\n  acme: {entry}\n")
    assert says in str(raised.value)


def test_unknown_partner_lists_the_known_ones() -> None:
    partners = PartnerDirectory.load(str(REPO / "partners.yaml"))
    with pytest.raises(
        PartnerConfigError, match="configured partners: acme, contoso, fabrikam, globex, initech, northwind, tailspin"
    ):
        partners.get("umbrella")


def test_declarative_formats_are_checked_at_start_up_naming_the_format_and_field() -> None:
    with pytest.raises(PartnerConfigError) as raised:
        PartnerDirectory.from_yaml(
            "partners:\n  initech: {prefix: initech/, format: stock}\n"
            "formats:\n  stock:\n    version: '1'\n    root: StockReport\n    record: Item\n"
            "    fields: {productId: {path: 'Code'}, quantity: {path: 'Qty', transforms: [price]}}\n"
        )
    assert "format 'stock'" in str(raised.value) and "fields.quantity.transforms" in str(raised.value)
    with pytest.raises(PartnerConfigError, match="format 'generic': the name is a built-in format's"):
        PartnerDirectory.from_yaml(
            "partners: {}\nformats:\n  generic: {version: '1', root: x, record: y, fields: {productId: {path: z}}}\n"
        )


def test_a_declarative_path_may_not_use_regular_expressions() -> None:
    """EXSLT's re:test backtracks without bound on a partner's value: it is not available at all."""
    with pytest.raises(PartnerConfigError) as raised:
        PartnerDirectory.from_yaml(
            "partners:\n  initech: {prefix: initech/, format: stock}\n"
            "formats:\n  stock:\n    version: '1'\n    root: StockReport\n    record: Item\n"
            "    namespaces: {re: 'http://exslt.org/regular-expressions'}\n"
            "    fields:\n      productId: {path: 'Code'}\n"
            "      name: {path: \"Name[re:test(., '^(a+)+$')]\"}\n"
        )
    assert "format 'stock'" in str(raised.value) and "fields.name" in str(raised.value)
    assert "Unregistered function" in str(raised.value) and "extension functions such as EXSLT's re:" in str(
        raised.value
    )


def test_partner_configuration_is_read_from_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    from dropgate.app import load_partners
    from dropgate.config import Settings

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="dropgate-config")
        s3.put_object(
            Bucket="dropgate-config", Key="dropgate/partners.yaml", Body=(REPO / "partners.yaml").read_bytes()
        )
        partners = load_partners(Settings(partners="s3://dropgate-config/dropgate/partners.yaml"))
        assert partners.get("initech").format == "initech-stock"
        with pytest.raises(
            PartnerConfigError, match=r"cannot read the partner configuration at s3://dropgate-config/nope\.yaml"
        ):
            load_partners(Settings(partners="s3://dropgate-config/nope.yaml"))
        s3.put_object(
            Bucket="dropgate-config", Key="bad.yaml", Body=b"partners:\n  acme: {prefix: acme/, format: csv}\n"
        )
        with pytest.raises(PartnerConfigError, match=r"s3://dropgate-config/bad.yaml is invalid:\n  partner 'acme'"):
            load_partners(Settings(partners="s3://dropgate-config/bad.yaml"))


def test_two_declarative_formats_cannot_claim_the_same_root() -> None:
    spec = "{version: '1', root: Stock, namespace: 'urn:x', record: Item, fields: {productId: {path: Code}}}"
    with pytest.raises(PartnerConfigError, match=r"format 'b-stock', field 'root': format 'a-stock' already has root"):
        PartnerDirectory.from_yaml(f"partners: {{}}\nformats:\n  a-stock: {spec}\n  b-stock: {spec}\n")


@pytest.mark.parametrize("inner", ["acme/eu", "acme/"])
def test_a_prefix_inside_another_partners_is_refused_naming_both(inner: str) -> None:
    """acme's FTP home is acme/: with globex at acme/eu/, acme could publish as globex."""
    with pytest.raises(PartnerConfigError) as raised:
        PartnerDirectory.from_yaml(
            f"partners:\n  acme: {{prefix: acme/, format: generic}}\n  globex: {{prefix: {inner}, format: generic}}\n"
        )
    relation = "is the same as" if inner == "acme/" else "lies inside"
    assert (
        f"partner 'globex', field 'prefix': '{inner.rstrip('/')}/' {relation} partner 'acme''s prefix 'acme/'"
        in str(raised.value)
    )


def test_a_partners_yaml_in_the_working_directory_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "partners.yaml").write_text("partners:\n  mallory: {prefix: acme/, format: generic}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DROPGATE_PARTNERS", raising=False)
    from dropgate.config import Settings

    configured = PartnerDirectory.load(Settings().partners)
    assert [p.id for p in configured if p.prefix == "acme/"] == ["acme"]


def test_the_composition_root_gives_the_local_inventory_format_its_row_spill() -> None:
    """Parsers do no I/O: a directory built outside dropgate.app has no row spill, and says so."""
    import io

    from dropgate.app import load_partners
    from dropgate.config import Settings
    from tests.conftest import fixture_bytes

    feed = fixture_bytes("good/local-inventory.xml", "google-local")
    wired = load_partners(Settings()).parser("google-local-inventory")
    assert any(type(item).__name__ == "Record" for item in wired.parse(io.BytesIO(feed)))
    bare = PartnerDirectory.load(str(REPO / "partners.yaml")).parser("google-local-inventory")
    with pytest.raises(RuntimeError, match=r"built without a row spill: build it with dropgate\.app\.load_partners"):
        list(bare.parse(io.BytesIO(feed)))


def test_a_cxml_partners_parser_is_built_with_its_available_quantity_rule() -> None:
    from dropgate.app import load_partners
    from dropgate.config import Settings

    partners = PartnerDirectory.from_yaml(
        "partners:\n  hoses: {prefix: hoses/, format: cxml-product-activity,"
        " cxml: {available_quantity: [StockOnHandQuantity, UnrestrictedUseQuantity]}}\n"
        "  fittings: {prefix: fittings/, format: cxml-product-activity}\n"
    )
    rule = partners.parser_for(partners.get("hoses")).available_quantity  # type: ignore[attr-defined]
    assert rule == ("StockOnHandQuantity", "UnrestrictedUseQuantity")
    default = partners.parser_for(partners.get("fittings")).available_quantity  # type: ignore[attr-defined]
    assert default == ("UnrestrictedUseQuantity", "StockOnHandQuantity")
    # the composition root's row spill still reaches a partner's parser built this way
    wired = load_partners(Settings())
    assert wired.parser_for(wired.get("contoso")).row_spill is wired.row_spill  # type: ignore[attr-defined]
