"""Quarantine: set a file aside, untouched, with a diagnostic a partner engineer can act on.

A quarantined file is copied byte for byte to ``quarantine/<original key>`` with a sidecar
``quarantine/<original key>.diagnostics.json``. The original object is never deleted or altered.
After a successful reprocess the copy and its sidecar move under ``quarantine/resolved/`` (they
stay findable). Keys under ``quarantine/`` are never ingested as drops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from dropgate.terminal import shell_command
from parsers.base import Problem

QUARANTINE_PREFIX = "quarantine/"
RESOLVED_PREFIX = "quarantine/resolved/"
DIAGNOSTICS_SUFFIX = ".diagnostics.json"


def is_quarantine_key(key: str) -> bool:
    return key.startswith(QUARANTINE_PREFIX)


def quarantine_key(original: str) -> str:
    return QUARANTINE_PREFIX + original


def resolved_key(original: str) -> str:
    return RESOLVED_PREFIX + original


def diagnostics_key(copy_key: str) -> str:
    return copy_key + DIAGNOSTICS_SUFFIX


def original_key(key: str) -> str:
    """``quarantine/acme/x.xml`` or ``quarantine/resolved/acme/x.xml`` → ``acme/x.xml``."""
    for prefix in (RESOLVED_PREFIX, QUARANTINE_PREFIX):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return key.removesuffix(DIAGNOSTICS_SUFFIX)


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


class S3Quarantine:
    """Quarantine in S3: the drop bucket's ``quarantine/`` prefix, or another bucket if configured."""

    def __init__(self, client: Any, bucket: str | None = None) -> None:
        self._client = client
        self.bucket = bucket

    def _target_bucket(self, source_bucket: str) -> str:
        return self.bucket or source_bucket

    def put(self, diagnostics: Diagnostics) -> str | None:
        if diagnostics.bucket is None:
            return None
        target = self._target_bucket(diagnostics.bucket)
        copy_key = quarantine_key(diagnostics.key)
        source: dict[str, str] = {"Bucket": diagnostics.bucket, "Key": diagnostics.key}
        if diagnostics.version_id and diagnostics.version_id != "null":
            source["VersionId"] = diagnostics.version_id
        # Managed copy: multipart for large objects, byte for byte, metadata kept.
        self._client.copy(source, target, copy_key)
        location = f"s3://{target}/{copy_key}"
        diagnostics.copy_location = location
        body = json.dumps(diagnostics.as_dict(), indent=2, ensure_ascii=False).encode()
        self._client.put_object(Bucket=target, Key=diagnostics_key(copy_key), Body=body, ContentType="application/json")
        return location

    def resolve(self, bucket: str, key: str) -> str | None:
        """Move the quarantined copy and its sidecar under ``quarantine/resolved/``."""
        from botocore.exceptions import ClientError

        target = self._target_bucket(bucket)
        moved = None
        for source_key, dest_key in (
            (quarantine_key(key), resolved_key(key)),
            (diagnostics_key(quarantine_key(key)), diagnostics_key(resolved_key(key))),
        ):
            try:
                self._client.copy({"Bucket": target, "Key": source_key}, target, dest_key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    continue
                raise
            self._client.delete_object(Bucket=target, Key=source_key)
            moved = moved or f"s3://{target}/{dest_key}"
        return moved

    def load(self, bucket: str, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        target = self._target_bucket(bucket)
        for copy_key in (quarantine_key(key), resolved_key(key)):
            try:
                body = self._client.get_object(Bucket=target, Key=diagnostics_key(copy_key))["Body"].read()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    continue
                raise
            loaded: dict[str, Any] = json.loads(body)
            return loaded
        return None
