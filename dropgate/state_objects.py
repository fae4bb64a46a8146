"""Where dropgate keeps per-partner state objects in S3 (key indexes, snapshot key sets).

Both live under ``dropgate-state/`` in the state bucket (the drop bucket when unset): a prefix that
is no partner's, with suffixes that match no drop notification, so writing state never triggers
ingestion. One place decides the bucket and key, and what "not there yet" looks like.
"""

from __future__ import annotations

from typing import Any

#: Where every state object lives: no partner prefix may be (or lie) here (dropgate.partners).
STATE_PREFIX = "dropgate-state/"
#: S3 error codes meaning the object does not exist (yet): read as empty state, not as a failure.
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def is_missing(error: Any) -> bool:
    """A botocore ``ClientError`` that says the object does not exist."""
    return error.response.get("Error", {}).get("Code") in MISSING_CODES


class PartnerStateLocation:
    """``s3://<state bucket or the drop's bucket>/<prefix><partner><suffix>``."""

    def __init__(self, bucket: str | None, prefix: str, suffix: str, what: str) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._suffix = suffix
        self._what = what

    def where(self, partner: str, bucket: str | None) -> tuple[str, str]:
        target = self._bucket or bucket
        if not target:
            raise ValueError(f"no bucket for {self._what}: set DROPGATE_STATE_BUCKET or DROPGATE_BUCKET")
        return target, f"{self._prefix}{partner}{self._suffix}"
