"""The AWS Glue Schema Registry behind :class:`dropgate.schema_registry.SchemaRegistry`.

The schema is JSON, created with ``BACKWARD`` compatibility, so Glue itself refuses a version a
consumer holding it could not read old values with (``dropgate schema check`` says why before
that). Registering looks the definition up first (``GetSchemaByDefinition``): the same definition
is the same version, however often it is registered. A new version is checked by Glue
asynchronously (``PENDING``), so registering waits, bounded, for its verdict.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dropgate.schema_registry import RegisteredSchema, RegistryError
from dropgate.terminal import shown

COMPATIBILITY = "BACKWARD"
DATA_FORMAT = "JSON"
_NOT_FOUND = "EntityNotFoundException"
_EXISTS = "AlreadyExistsException"


class GlueSchemaRegistry:
    """One schema (``schema``) in one Glue registry (``registry``), through a boto3 ``glue`` client."""

    def __init__(self, client: Any, registry: str, schema: str, *, settle_s: float = 30.0) -> None:
        self.client = client
        self.registry = registry
        self.schema = schema
        self.settle_s = settle_s

    @property
    def _schema_id(self) -> dict[str, str]:
        return {"RegistryName": self.registry, "SchemaName": self.schema}

    def find(self, definition: str) -> RegisteredSchema | None:
        found = self._lookup(definition)
        return found[0] if found is not None and found[1] == "AVAILABLE" else None

    def register(self, definition: str) -> RegisteredSchema:
        found = self._lookup(definition)
        if found is not None:
            return self._verdict(*found)
        if not self._schema_exists():
            self._ensure_registry()
            created = self._create_schema(definition)
            if created is not None:
                return created
        response = self._call("register_schema_version", SchemaId=self._schema_id, SchemaDefinition=definition)
        version = self._version(response["SchemaVersionId"], created=True)
        return self._verdict(*self._settled(version, response.get("Status", "PENDING")))

    def _lookup(self, definition: str) -> tuple[RegisteredSchema, str] | None:
        """The version holding ``definition`` and its status; ``None`` when registry, schema or version is missing."""
        try:
            response = self._call("get_schema_by_definition", SchemaId=self._schema_id, SchemaDefinition=definition)
        except _Missing:
            return None
        return self._version(response["SchemaVersionId"]), response.get("Status", "AVAILABLE")

    def _version(self, version_id: str, *, created: bool = False) -> RegisteredSchema:
        number = self._call("get_schema_version", SchemaVersionId=version_id)["VersionNumber"]
        return RegisteredSchema(self.registry, self.schema, version_id, int(number), created)

    def _settled(self, version: RegisteredSchema, status: str) -> tuple[RegisteredSchema, str]:
        """Glue checks compatibility after answering: wait (bounded) until the version is no longer pending."""
        waited_until = time.monotonic() + self.settle_s
        while status == "PENDING" and time.monotonic() < waited_until:
            time.sleep(1)  # Glue's check takes seconds; there is nothing to be notified by
            status = self._call("get_schema_version", SchemaVersionId=version.version_id)["Status"]
        return version, status

    def _verdict(self, version: RegisteredSchema, status: str) -> RegisteredSchema:
        if status == "AVAILABLE":
            return version
        if status == "FAILURE":
            raise RegistryError(
                f"Glue refused this definition as version {version.version_number} of schema "
                f"'{shown(self.schema)}': it is not {COMPATIBILITY} compatible with the versions before it. "
                "`dropgate schema check` names the breaking changes; a breaking change needs a new topic "
                "and schema name (v2), see docs/contract.md"
            )
        raise RegistryError(
            f"version {version.version_number} of schema '{shown(self.schema)}' is {shown(status)} "
            f"after {self.settle_s:.0f} s; run the command again"
        )

    def _schema_exists(self) -> bool:
        try:
            response = self._call("get_schema", SchemaId=self._schema_id)
        except _Missing:
            return False
        if response.get("DataFormat") != DATA_FORMAT:
            raise RegistryError(
                f"schema '{shown(self.schema)}' in Glue registry '{shown(self.registry)}' holds "
                f"{shown(response.get('DataFormat'))}, not {DATA_FORMAT}: name another schema (DROPGATE_SCHEMA_NAME)"
            )
        return True

    def _ensure_registry(self) -> None:
        try:
            self._call("get_registry", RegistryId={"RegistryName": self.registry})
        except _Missing:
            self._call_tolerating_exists(
                "create_registry",
                RegistryName=self.registry,
                Description="dropgate: the schemas of the state events it publishes",
            )

    def _create_schema(self, definition: str) -> RegisteredSchema | None:
        """Version 1 with the schema, or ``None`` when another caller created the schema meanwhile."""
        response = self._call_tolerating_exists(
            "create_schema",
            RegistryId={"RegistryName": self.registry},
            SchemaName=self.schema,
            DataFormat=DATA_FORMAT,
            Compatibility=COMPATIBILITY,
            SchemaDefinition=definition,
            Description="dropgate state events (the value's JSON Schema, generated from the model)",
        )
        if response is None:
            return None
        version = self._version(response["SchemaVersionId"], created=True)
        return self._verdict(*self._settled(version, response.get("SchemaVersionStatus", "PENDING")))

    def _call_tolerating_exists(self, operation: str, **arguments: Any) -> dict[str, Any] | None:
        try:
            return self._call(operation, **arguments)
        except RegistryError as error:
            if isinstance(error.__cause__, ClientError) and _code(error.__cause__) == _EXISTS:
                return None
            raise

    def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        """One Glue call; a missing entity is :class:`_Missing`, anything else a bounded :class:`RegistryError`."""
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**arguments)
        except ClientError as error:
            if _code(error) == _NOT_FOUND:
                raise _Missing from error
            message = error.response.get("Error", {}).get("Message", "")
            raise RegistryError(
                f"Glue {operation} for '{shown(self.registry)}/{shown(self.schema)}' failed: "
                f"{shown(_code(error))}: {shown(message, limit=300)}"
            ) from error
        except BotoCoreError as error:
            raise RegistryError(f"Glue {operation} failed: {shown(error, limit=300)}") from error
        return response


class _Missing(Exception):
    """Glue's EntityNotFoundException: the registry, the schema or the version is not there."""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
