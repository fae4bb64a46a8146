"""Partner configuration: who drops where, in which format, under which policy.

One declarative file (``partners.yaml``) so that a new partner in a known format is
configuration, not code. It is validated at start-up: a bad entry fails loudly, naming the
partner, the field and what is allowed, instead of failing the first file of that partner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from parsers import FORMATS
from parsers.limits import Limits


class PartnerConfigError(ValueError):
    """The partner configuration is unusable; the message says where and why."""


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    prefix: str = Field(min_length=1, description="Key prefix in the drop bucket, e.g. 'acme/'.")
    format: str
    key_template: str = "{productId}"
    policy: Literal["strict", "skip_invalid"] = "strict"
    snapshot: Literal["full", "delta"] = "delta"
    #: Overrides of the deployment's safety limits for this partner, e.g. {max_records: 20000000}.
    limits: dict[str, int] | None = None

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value:
            unknown = sorted(set(value) - set(Limits.names()))
            if unknown:
                raise ValueError(f"unknown limit(s) {', '.join(unknown)}; known: {', '.join(Limits.names())}")
            if any(v < 1 for v in value.values()):
                raise ValueError("limits must be positive whole numbers")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"unknown format '{value}'; known formats: {', '.join(sorted(FORMATS))}")
        return value

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            rendered = value.format(productId="p", partnerId="x")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"key_template '{value}' may only use {{productId}} and {{partnerId}} ({error})") from None
        if "p" not in rendered or "{productId}" not in value:
            raise ValueError("key_template must contain {productId}")
        return value

    @field_validator("snapshot")
    @classmethod
    def _snapshot_supported(cls, value: str) -> str:
        if value == "full":
            # Accepting it silently would leave deleted products live on the topic.
            raise ValueError(
                "snapshot mode 'full' (tombstones for products missing from a snapshot) is not "
                "supported yet; use 'delta' and send deletions explicitly"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value.startswith("/") or value.startswith("quarantine/"):
            raise ValueError("prefix must be a relative key prefix outside quarantine/, e.g. 'acme/'")
        return value if value.endswith("/") else value + "/"


class _PartnerFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partners: dict[str, Partner]

    @model_validator(mode="before")
    @classmethod
    def _inject_ids(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("partners"), dict):
            data = dict(data)
            data["partners"] = {
                pid: ({"id": pid, **entry} if isinstance(entry, dict) else entry)
                for pid, entry in data["partners"].items()
            }
        return data


class PartnerDirectory:
    """Looks partners up by id or by the key a file was dropped under."""

    def __init__(self, partners: list[Partner]) -> None:
        self._by_id = {p.id: p for p in partners}
        # Longest prefix first, so 'acme/eu/' wins over 'acme/'.
        self._by_prefix = sorted(partners, key=lambda p: len(p.prefix), reverse=True)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_id.values())

    def get(self, partner_id: str) -> Partner:
        try:
            return self._by_id[partner_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id)) or "none"
            raise PartnerConfigError(f"unknown partner '{partner_id}'; configured partners: {known}") from None

    def for_key(self, key: str) -> Partner | None:
        return next((p for p in self._by_prefix if key.startswith(p.prefix)), None)

    def prefixes(self) -> list[str]:
        return sorted(p.prefix for p in self._by_id.values())

    @classmethod
    def from_yaml(cls, text: str, *, origin: str = "partners.yaml") -> PartnerDirectory:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PartnerConfigError(f"{origin} is not valid YAML: {error}") from None
        try:
            parsed = _PartnerFile.model_validate(data)
        except ValidationError as error:
            lines = []
            for err in error.errors():
                loc = ".".join(str(part) for part in err["loc"])
                lines.append(f"  {loc}: {err['msg']}")
            raise PartnerConfigError(f"{origin} is invalid:\n" + "\n".join(lines)) from None
        return cls(list(parsed.partners.values()))

    @classmethod
    def load(cls, location: str) -> PartnerDirectory:
        """Load from a local path (S3 URLs arrive with the partner-configuration issue)."""
        path = Path(location)
        if not path.exists():
            raise PartnerConfigError(f"partner configuration not found at {location} (set DROPGATE_PARTNERS)")
        return cls.from_yaml(path.read_text(encoding="utf-8"), origin=str(path))
