"""The quarantine in S3 (the :class:`~dropgate.quarantine.Quarantine` port): copies and sidecars
under the layout :mod:`dropgate.quarantine` defines."""

from __future__ import annotations

import json
from typing import Any

from dropgate.quarantine import (
    Diagnostics,
    legacy_keys,
    quarantine_key,
    resolved_key,
    resolved_sidecar_key,
    sidecar_key,
)


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
        self._client.put_object(
            Bucket=target, Key=sidecar_key(diagnostics.key), Body=body, ContentType="application/json"
        )
        return location

    def resolve(self, bucket: str, key: str) -> str | None:
        """Move the quarantined copy and its sidecar under ``quarantine/resolved/`` (from either layout)."""
        target = self._target_bucket(bucket)
        legacy_copy, legacy_sidecar, _, _ = legacy_keys(key)
        moved = None
        for (current, legacy), dest_key in (
            ((quarantine_key(key), legacy_copy), resolved_key(key)),
            ((sidecar_key(key), legacy_sidecar), resolved_sidecar_key(key)),
        ):
            if self._move(target, current, dest_key):
                # A first-layout copy re-quarantined since has both: the current one is kept.
                self._client.delete_object(Bucket=target, Key=legacy)
            elif not self._move(target, legacy, dest_key):
                continue
            moved = moved or f"s3://{target}/{dest_key}"
        return moved

    def _move(self, bucket: str, source_key: str, dest_key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.copy({"Bucket": bucket, "Key": source_key}, bucket, dest_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING_CODES:
                return False
            raise
        self._client.delete_object(Bucket=bucket, Key=source_key)
        return True

    def load(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The sidecar of ``key``'s quarantine, current or resolved, in this layout or the first one."""
        from botocore.exceptions import ClientError

        target = self._target_bucket(bucket)
        _, legacy_sidecar, _, legacy_resolved = legacy_keys(key)
        for candidate in (sidecar_key(key), resolved_sidecar_key(key), legacy_sidecar, legacy_resolved):
            try:
                body = self._client.get_object(Bucket=target, Key=candidate)["Body"].read()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in MISSING_CODES:
                    continue
                raise
            loaded: dict[str, Any] = json.loads(body)
            return loaded
        return None


MISSING_CODES = ("404", "NoSuchKey", "NotFound")
