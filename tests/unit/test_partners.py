import pytest

from dropgate.partners import PartnerConfigError, PartnerDirectory
from tests.conftest import REPO


def test_repository_partners_load_and_route_by_longest_prefix() -> None:
    partners = PartnerDirectory.from_yaml(
        "partners:\n  acme: {prefix: acme/, format: generic}\n  acme-eu: {prefix: acme/eu, format: generic}\n"
    )
    assert partners.for_key("acme/eu/x.xml").id == "acme-eu"  # type: ignore[union-attr]
    assert partners.for_key("acme/x.xml").id == "acme"  # type: ignore[union-attr]
    assert partners.for_key("other/x.xml") is None
    assert PartnerDirectory.load(str(REPO / "partners.yaml")).get("globex").key_template == "{partnerId}:{productId}"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            "{prefix: acme/, format: csv}",
            "partners.acme.format: Value error, unknown format 'csv'; known formats: generic",
        ),
        ("{prefix: acme/, format: generic, policy: lenient}", "partners.acme.policy: Input should be 'strict' or"),
        ("{prefix: acme/, format: generic, key_template: '{sku}'}", "may only use {productId} and {partnerId}"),
        ("{prefix: acme/, format: generic, colour: red}", "partners.acme.colour: Extra inputs are not permitted"),
        ("{format: generic}", "partners.acme.prefix: Field required"),
        ("{prefix: acme/, format: generic, snapshot: full}", "snapshot mode 'full'"),
    ],
)
def test_bad_configuration_names_partner_field_and_what_is_allowed(entry: str, says: str) -> None:
    with pytest.raises(PartnerConfigError) as raised:
        PartnerDirectory.from_yaml(f"partners:\n  acme: {entry}\n")
    assert says in str(raised.value)


def test_unknown_partner_lists_the_known_ones() -> None:
    partners = PartnerDirectory.load(str(REPO / "partners.yaml"))
    with pytest.raises(PartnerConfigError, match="configured partners: acme, globex"):
        partners.get("initech")
