"""Object stores (the :class:`~dropgate.storage.ObjectStore` port): S3, and files on local disk."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from dropgate.storage import ObjectMeta, ObjectMissing, ObjectRef
from dropgate.terminal import shown


class S3ObjectStore:
    """S3 through boto3, streamed with Powertools' seekable ``S3Object`` (never read whole)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def head(self, ref: ObjectRef) -> ObjectMeta:
        from botocore.exceptions import ClientError

        kwargs: dict[str, str] = {"Bucket": ref.bucket or "", "Key": ref.key}
        if ref.version_id and ref.version_id != "null":
            kwargs["VersionId"] = ref.version_id
        try:
            response = self._client.head_object(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
                raise ObjectMissing(f"{ref.shown} does not exist (deleted before it was processed?)") from None
            raise
        return ObjectMeta(
            version_id=response.get("VersionId") or ref.version_id,
            size=int(response["ContentLength"]),
            last_modified=response["LastModified"].astimezone(UTC),
            etag=response.get("ETag"),
        )

    def open(self, ref: ObjectRef, meta: ObjectMeta) -> BinaryIO:
        from aws_lambda_powertools.utilities.streaming import S3Object

        options: dict[str, str] = {}
        if not meta.version_id and meta.etag:
            options["IfMatch"] = meta.etag  # unversioned bucket: refuse to read a newer overwrite
        version = meta.version_id if meta.version_id and meta.version_id != "null" else None
        stream = S3Object(
            bucket=ref.bucket or "",
            key=ref.key,
            version_id=version,
            boto3_client=self._client,
            **options,  # type: ignore[arg-type]  # passed through to get_object
        )
        return cast(BinaryIO, stream)


class LocalFileStore:
    """A file on disk, for ``dropgate inspect`` and ``dropgate ingest ./FILE`` (no version)."""

    def head(self, ref: ObjectRef) -> ObjectMeta:
        path = Path(ref.key)
        if not path.is_file():
            raise ObjectMissing(f"{shown(ref.key)} is not a file")
        stat = path.stat()
        return ObjectMeta(
            version_id=None, size=stat.st_size, last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        )

    def open(self, ref: ObjectRef, meta: ObjectMeta) -> BinaryIO:
        return Path(ref.key).open("rb")


class ObjectUnreadable(Exception):
    """An object that could not be read; the message is S3's error code or the connection's error."""


def read_s3_object(client: Any, bucket: str, key: str) -> bytes:
    """The whole of a small object (configuration), or :class:`ObjectUnreadable` saying why not."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        raise ObjectUnreadable(error.response.get("Error", {}).get("Code", "error")) from None
    except BotoCoreError as error:
        raise ObjectUnreadable(str(error)) from None
    return body
