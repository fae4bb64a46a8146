"""Safety limits for untrusted partner files.

Every limit has a safe default, can be changed per deployment (``DROPGATE_MAX_…``) and per partner
(``limits:`` in partners.yaml). Exceeding one quarantines the whole file with a ``security_limit``
problem that names the limit, its value and where it was hit. Byte limits (stored and decompressed
size, compression ratio) are enforced on the byte stream; the others by the parser and the core.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Limits:
    max_object_bytes: int = 2 * 1024**3
    max_decompressed_bytes: int = 4 * 1024**3
    #: A gzip drop may expand at most this many times (real XML compresses 5 to 20 times; bombs 1000+).
    max_compression_ratio: int = 200
    max_records: int = 10_000_000
    #: Element nesting inside one record (product → locations → location is 3).
    max_depth: int = 12
    #: Characters of text in one field.
    max_text_chars: int = 64 * 1024
    max_attributes: int = 64
    #: XML read without completing a record. Bounds memory however the document is shaped: elements
    #: that are not records (a bomb of ``<x/>``) or one record with millions of children.
    max_record_bytes: int = 1024 * 1024

    def overridden(self, overrides: dict[str, Any] | None) -> Limits:
        if not overrides:
            return self
        return replace(self, **overrides)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


DEFAULT_LIMITS = Limits()
