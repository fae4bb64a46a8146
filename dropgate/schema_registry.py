"""The value schema in a schema registry: what is registered, how a registered version frames a value.

The port (:class:`SchemaRegistry`) is implemented for the AWS Glue Schema Registry by
:mod:`dropgate.adapters.glue_registry` and built in :mod:`dropgate.app`. The definition registered
is the JSON Schema ``dropgate schema`` prints and ``schemas/`` holds, byte for byte: the same model
is the same definition, so registering twice finds the version already there.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Protocol

from dropgate import events

#: The command that registers the schema, named by every error that needs it run.
REGISTER_COMMAND = "dropgate schema register"

#: The Glue serializer's wire format: a header version byte (3), a compression byte (0: none),
#: then the 16 bytes of the schema version's UUID, then the serialized value.
GLUE_HEADER_VERSION = 3
GLUE_COMPRESSION_NONE = 0


def definition() -> str:
    """The value's JSON Schema as text: what ``dropgate schema`` prints and ``schemas/`` holds."""
    return json.dumps(events.json_schema(), indent=2, sort_keys=True)


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """One version of the schema in the registry."""

    registry: str
    schema: str
    version_id: str
    version_number: int
    #: True when this call created the version (else it was there already).
    created: bool = False

    def describe(self) -> str:
        state = "registered" if self.created else "already registered"
        return f"{self.registry}/{self.schema} version {self.version_number} ({self.version_id}): {state}"


class RegistryError(RuntimeError):
    """The registry could not be reached, or refused the schema; the message says which and why."""


class SchemaNotRegistered(RegistryError):
    """The schema this code publishes is not a version in the registry (yet)."""


class SchemaRegistry(Protocol):
    """A registry holding versions of one schema (Glue in production)."""

    registry: str
    schema: str

    def register(self, definition: str) -> RegisteredSchema:
        """The version holding ``definition``: found, or created (registry and schema too when missing)."""
        ...

    def find(self, definition: str) -> RegisteredSchema | None:
        """The available version holding ``definition``, or ``None``."""
        ...


def require_registered(registry: SchemaRegistry, text: str | None = None) -> RegisteredSchema:
    """The cold-start check: the version this code would publish, or an error naming the fix."""
    found = registry.find(text if text is not None else definition())
    if found is None:
        raise SchemaNotRegistered(
            f"the event schema this code publishes is not registered as a version of schema "
            f"'{registry.schema}' in Glue registry '{registry.registry}': run `{REGISTER_COMMAND}` "
            "with this deployment's settings, then retry"
        )
    return found


def glue_frame_prefix(version_id: str) -> bytes:
    """The bytes the Glue serializer writes before a value of this schema version."""
    return bytes((GLUE_HEADER_VERSION, GLUE_COMPRESSION_NONE)) + uuid.UUID(version_id).bytes
