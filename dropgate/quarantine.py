"""Quarantine: set a file aside, untouched, with a diagnostic a partner engineer can act on.

A quarantined file is copied byte for byte to ``quarantine/files/<original key>``, with its sidecar
at ``quarantine/diagnostics/<original key>.diagnostics.json``. The original object is never
deleted or altered. After a successful reprocess both move under ``quarantine/resolved/`` (the
same two names below it), where they stay findable. Keys under ``quarantine/`` are never ingested
as drops.

Copies, sidecars and resolved objects live under prefixes of their own, so no key a partner can
upload makes one look like another: in the first layout (``quarantine/<key>`` beside
``quarantine/<key>.diagnostics.json``, ``quarantine/resolved/<key>``) a partner file named
``a.xml.diagnostics.json`` was the sidecar of ``a.xml``, and a drop at ``resolved/v.xml`` landed on
the resolved copy of ``v.xml``. Files quarantined in that layout are still read, reprocessed and
resolved (their objects move to the new names when resolved).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from dropgate.storage import ObjectRef, parse_s3_uri
from dropgate.terminal import shell_command
from parsers.base import Problem

QUARANTINE_PREFIX = "quarantine/"
COPIES_PREFIX = "quarantine/files/"
SIDECARS_PREFIX = "quarantine/diagnostics/"
RESOLVED_PREFIX = "quarantine/resolved/"
RESOLVED_COPIES_PREFIX = "quarantine/resolved/files/"
RESOLVED_SIDECARS_PREFIX = "quarantine/resolved/diagnostics/"
DIAGNOSTICS_SUFFIX = ".diagnostics.json"
#: Longest first: how each kind of quarantine key maps back to its original (the first layout last).
_ORIGINAL_OF = (
    (RESOLVED_COPIES_PREFIX, ""),
    (RESOLVED_SIDECARS_PREFIX, DIAGNOSTICS_SUFFIX),
    (COPIES_PREFIX, ""),
    (SIDECARS_PREFIX, DIAGNOSTICS_SUFFIX),
    (RESOLVED_PREFIX, "legacy"),
    (QUARANTINE_PREFIX, "legacy"),
)


def is_quarantine_key(key: str) -> bool:
    return key.startswith(QUARANTINE_PREFIX)


def quarantine_key(original: str) -> str:
    """Where the copy of ``original`` is kept while it is quarantined."""
    return COPIES_PREFIX + original


def sidecar_key(original: str) -> str:
    return SIDECARS_PREFIX + original + DIAGNOSTICS_SUFFIX


def resolved_key(original: str) -> str:
    return RESOLVED_COPIES_PREFIX + original


def resolved_sidecar_key(original: str) -> str:
    return RESOLVED_SIDECARS_PREFIX + original + DIAGNOSTICS_SUFFIX


def legacy_keys(original: str) -> tuple[str, str, str, str]:
    """The first layout's copy, sidecar, resolved copy and resolved sidecar of ``original``."""
    copy, resolved = QUARANTINE_PREFIX + original, RESOLVED_PREFIX + original
    return copy, copy + DIAGNOSTICS_SUFFIX, resolved, resolved + DIAGNOSTICS_SUFFIX


def original_key(key: str) -> str:
    """Any quarantine key (copy, sidecar, resolved, either layout) → the key of the original drop.

    ``quarantine/files/acme/x.xml`` and ``quarantine/diagnostics/acme/x.xml.diagnostics.json`` →
    ``acme/x.xml``; a key outside ``quarantine/`` is an original already.
    """
    for prefix, suffix in _ORIGINAL_OF:
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            if suffix == "legacy":  # the first layout could not tell a sidecar from a file so named
                return rest.removesuffix(DIAGNOSTICS_SUFFIX)
            return rest.removesuffix(suffix)
    return key


def copy_of(diagnostics: dict[str, Any], original: ObjectRef, quarantine_bucket: str) -> ObjectRef:
    """Where the sidecar says the copy is (either layout), else where this layout keeps it."""
    location = diagnostics.get("quarantineCopy")
    if isinstance(location, str) and location.startswith("s3://"):
        return parse_s3_uri(location)
    return ObjectRef(quarantine_bucket, quarantine_key(original.key))


def sidecar_location(copy_location: str) -> str:
    """``s3://…`` of the sidecar beside a copy at ``copy_location`` (what the ledger records), either layout."""
    copy = parse_s3_uri(copy_location)
    if copy.key.startswith((COPIES_PREFIX, RESOLVED_COPIES_PREFIX)):
        resolved = copy.key.startswith(RESOLVED_COPIES_PREFIX)
        original = original_key(copy.key)
        return f"s3://{copy.bucket}/" + (resolved_sidecar_key(original) if resolved else sidecar_key(original))
    return copy_location + DIAGNOSTICS_SUFFIX  # the first layout: beside the copy


def reprocess_command(bucket: str | None, key: str) -> str:
    """The command to paste: quoted so that any key a partner can upload reaches dropgate unchanged."""
    target = f"s3://{bucket}/{key}" if bucket else key
    return shell_command("dropgate", "reprocess", target)


@dataclass(slots=True)
class Diagnostics:
    """What the sidecar says; ``as_dict`` is its JSON layout."""

    bucket: str | None
    key: str
    version_id: str | None
    size: int
    sha256: str
    uploaded_at: datetime
    partner: str | None
    parser_name: str
    parser_version: str
    policy: str
    problems: list[Problem]
    problem_count: int
    problem_cap: int
    published: int
    copy_location: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": {
                "bucket": self.bucket,
                "key": self.key,
                "versionId": self.version_id,
                "size": self.size,
                "sha256": self.sha256 or None,
                "uploadedAt": self.uploaded_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            },
            "partner": self.partner,
            "parser": {"name": self.parser_name, "version": self.parser_version},
            "policy": self.policy,
            "publishedEvents": self.published,
            "problemCount": self.problem_count,
            "problemsShown": len(self.problems),
            "problemCap": self.problem_cap,
            "problemsByKind": _count_by_kind(self.problems),
            "problems": [p.as_dict() for p in self.problems],
            "quarantinedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "quarantineCopy": self.copy_location,
            "reprocess": reprocess_command(self.bucket, self.key),
        }


def _count_by_kind(problems: list[Problem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    return counts


class Quarantine(Protocol):
    def put(self, diagnostics: Diagnostics) -> str | None: ...

    def resolve(self, bucket: str, key: str) -> str | None: ...

    def load(self, bucket: str, key: str) -> dict[str, Any] | None: ...


class NullQuarantine:
    """Local files: diagnostics are printed, nothing is copied."""

    def put(self, diagnostics: Diagnostics) -> str | None:
        return None

    def resolve(self, bucket: str, key: str) -> str | None:
        return None

    def load(self, bucket: str, key: str) -> dict[str, Any] | None:
        return None
