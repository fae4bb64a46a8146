"""Where files come from: S3 (the product) or a local path (inspect, local ingest, benchmarks).

The core only sees :class:`ObjectStore`: ``head`` pins the exact version to process and
``open`` streams that version, so an overwrite between the two can never mix two files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import BinaryIO, Protocol

from dropgate.terminal import shown


class ObjectMissing(Exception):
    """The object (version) no longer exists; there is nothing to process."""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object version. ``bucket`` is None for a local file."""

    bucket: str | None
    key: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        if self.bucket is None:
            return self.key
        return f"s3://{self.bucket}/{self.key}"

    def with_version(self, version_id: str | None) -> ObjectRef:
        return replace(self, version_id=version_id)

    def __str__(self) -> str:
        return self.uri + (f"?versionId={self.version_id}" if self.version_id else "")

    @property
    def shown(self) -> str:
        """For messages a person reads: control characters escaped, cut at 120 characters."""
        return shown(str(self))


#: S3's rules for bucket names (3 to 63 lowercase letters, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def parse_s3_uri(uri: str) -> ObjectRef:
    """``s3://bucket/key`` → :class:`ObjectRef`; anything else is a clear error.

    Read literally, not as a URL: everything after the bucket's ``/`` is the key, ``#``, ``?``, ``%``
    and spaces included (``acme/x#frag.xml`` is a key a partner can upload; a URL parser cut it to
    ``acme/x`` and dropgate processed another object).
    """
    bucket, slash, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not slash or not key or not _BUCKET.fullmatch(bucket):
        raise ValueError(f"'{shown(uri)}' is not an S3 URI; expected s3://BUCKET/KEY")
    return ObjectRef(bucket=bucket, key=key)


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    version_id: str | None
    size: int
    last_modified: datetime
    etag: str | None = None


class ObjectStore(Protocol):
    def head(self, ref: ObjectRef) -> ObjectMeta: ...

    def open(self, ref: ObjectRef, meta: ObjectMeta) -> BinaryIO: ...
