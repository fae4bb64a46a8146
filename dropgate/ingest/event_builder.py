"""Parser records → validated, serialized events for one file (pure: no I/O, no clock).

Also the document-level rules a record cannot see: which partner the document says it belongs
to, and whether its snapshot time is believable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import ValidationError

from dropgate import events
from dropgate.events import SplitValue
from dropgate.ingest.problems import ProblemCollector
from dropgate.key_ownership import Namespace, namespace_owner, namespaces
from dropgate.partners import Partner, PartnerDirectory
from dropgate.storage import ObjectMeta, ObjectRef
from dropgate.terminal import shown
from parsers.base import Document, Parser, Problem, Record, truncate

#: A snapshot time this far past the upload time is a typo, and would block every later real snapshot.
FUTURE_TOLERANCE = timedelta(days=1)


class EventBuilder:
    """Turns parser records into validated, serialized events for one file."""

    def __init__(
        self,
        ref: ObjectRef,
        meta: ObjectMeta,
        partner: Partner | None,
        partners: PartnerDirectory,
        parser: Parser,
        problems: ProblemCollector,
        max_event_bytes: int = 900_000,
        *,
        state_hashes: bool = True,
    ) -> None:
        self.ref = ref
        self.state_hashes = state_hashes
        self.partner = partner
        self.partners = partners
        self.declared_partner: str | None = None
        self.problems = problems
        self.as_of = meta.last_modified
        self.uploaded = meta.last_modified
        self.max_event_bytes = max_event_bytes
        self.parser_ref = {"name": parser.name, "version": parser.version}
        self.source = {"bucket": ref.bucket, "key": ref.key, "versionId": ref.version_id}
        self._unknown_partner_reported = False
        self._serializer: events.FileSerializer | None = None
        self._reserved_keys: tuple[str, tuple[Namespace, ...]] | None = None
        #: Keys a file no partner claims (inspect's preview) instead of reporting it.
        self.fallback: Partner | None = None
        #: What the document says it is (Amazon's PurgeAndReplace); None: the partner decides.
        self.snapshot: Literal["full", "delta"] | None = None

    @property
    def as_of_ms(self) -> int:
        return events.epoch_ms(self.as_of)

    def document(self, doc: Document) -> None:
        """What the document says of itself: its snapshot mode and time, and its partner."""
        self.snapshot = doc.snapshot
        if doc.as_of is not None:
            self.as_of = doc.as_of
            if doc.as_of > self.uploaded + FUTURE_TOLERANCE:
                self.problems.add(
                    Problem(
                        kind="validation",
                        message=(
                            f"the snapshot time {events.format_timestamp(doc.as_of)} is after the upload time "
                            f"{events.format_timestamp(self.uploaded)}; a future snapshot time would make every "
                            "later real snapshot look stale: send the time the inventory was taken"
                        ),
                        path=f"/{doc.root}",
                        field="asOf",
                        value=events.format_timestamp(doc.as_of),
                    )
                )
        self.declared_partner = doc.partner
        if self.partner is not None:
            if doc.partner is not None and doc.partner != self.partner.id:
                self._partner_problem(
                    doc,
                    f"the document says partner '{doc.partner}' but was dropped under "
                    f"'{self.partner.prefix}', which belongs to partner '{self.partner.id}'; "
                    "drop it in the right folder or correct the partner attribute",
                )
        elif doc.partner is not None:
            self._adopt_declared_partner(doc, doc.partner)

    def _adopt_declared_partner(self, doc: Document, declared: str) -> None:
        """A file under no prefix takes the partner its document names, if that partner reads this format."""
        try:
            named = self.partners.get(declared)
        except ValueError:
            return
        expected = self.partners.parser_for(named).name
        if expected != self.parser_ref["name"]:
            # Otherwise any file under no prefix could publish (and, in full mode, delete) as any partner.
            self._partner_problem(
                doc,
                f"the document says partner '{named.id}', whose format is '{named.format}' "
                f"({expected}), but it was read as {self.parser_ref['name']}; drop the partner's "
                f"files under '{named.prefix}' in its own format",
            )
            self._unknown_partner_reported = True  # this problem already says where the file belongs
            return
        self.partner = named

    def _partner_problem(self, doc: Document, message: str) -> None:
        self.problems.add(
            Problem(
                kind="validation",
                message=message,
                path=f"/{doc.root}/@partner",
                field="partner",
                value=truncate(doc.partner),
            )
        )

    def report_unrouted(self) -> None:
        """The file belongs to no partner: one problem saying how to fix that (once per file)."""
        if self._unknown_partner_reported:
            return
        self._unknown_partner_reported = True
        prefixes = ", ".join(self.partners.prefixes()) or "none"
        named = (
            f"names partner '{self.declared_partner}', which is not configured or not in this format"
            if self.declared_partner
            else ("names no partner")
        )
        self.problems.add(
            Problem(
                kind="validation",
                message=(
                    f"no partner for this file: '{shown(self.ref.key)}' is under no partner prefix ({prefixes}) "
                    f"and the document {named}; add the partner to partners.yaml or drop it under its prefix"
                ),
                field="partner",
                value=truncate(self.declared_partner),
            )
        )

    def serializer_for(self, partner: Partner) -> events.FileSerializer:
        """This file's serializer for ``partner`` (built once; the parallel path's workers use it too)."""
        if self._serializer is None or self._serializer.partner_id != partner.id:
            self._serializer = events.FileSerializer(
                partner_id=partner.id,
                as_of=self.as_of,
                bucket=self.source["bucket"],
                key=str(self.source["key"]),
                version_id=self.source["versionId"],
                parser_name=self.parser_ref["name"],
                parser_version=self.parser_ref["version"],
                state_hashes=self.state_hashes,
            )
        return self._serializer

    def build(self, record: Record) -> tuple[bytes, SplitValue | None] | None:
        partner = self.partner or self.fallback
        if partner is None:
            self.report_unrouted()
            return None
        key = events.render_key(partner.key_template, product_id=record.product_id, partner_id=partner.id)
        owner = namespace_owner(key, self.reserved_for(partner))
        if owner is not None:  # a tombstone too: it would delete the other partner's product
            self._reserved(record, key, owner, partner)
            return None
        if record.fields is None:
            return key, None
        try:
            value = self.serializer_for(partner).serialize(record.product_id, record.fields, record.index)
        except ValidationError as error:
            for err in error.errors():
                loc = ".".join(str(part) for part in err["loc"])
                self._invalid(
                    record,
                    f"{loc or 'product'}: {err['msg']}",
                    field=loc or None,
                    value=truncate(err.get("input")) if loc else None,
                )
            return None
        except ValueError as error:  # the contract's cross-field rules (locations, productId)
            self._invalid(record, f"product: {error}")
            return None
        size = len(key) + len(value.head) + 64 + len(value.tail)
        if size > self.max_event_bytes:
            self._invalid(
                record,
                f"this product's event would be {size:,} bytes, over the limit of {self.max_event_bytes:,} "
                "a Kafka message may carry; shorten its longest fields (name, sku) or split its locations",
            )
            return None
        return key, value

    def reserved_for(self, partner: Partner) -> tuple[Namespace, ...]:
        """The keys other partners' templates reserve that ``partner``'s records could make."""
        if self._reserved_keys is None or self._reserved_keys[0] != partner.id:
            found = namespaces(
                ((other.id, other.key_template) for other in self.partners),
                for_partner=partner.id,
                template=partner.key_template,
            )
            self._reserved_keys = (partner.id, found)
        return self._reserved_keys[1]

    def _reserved(self, record: Record, key: bytes, owner: str, partner: Partner) -> None:
        self.problems.add(
            Problem(
                kind="authorization",
                message=(
                    f"product id '{shown(record.product_id)}' makes the key '{shown(key.decode(errors='replace'))}', "
                    f"which partner '{shown(owner)}' holds by its key template (its id in every key): a partner "
                    f"may publish only its own keys. Send the product id without the '{shown(owner)}' part, or "
                    f"give partner '{shown(partner.id)}' the key template '{{partnerId}}:{{productId}}' in "
                    "partners.yaml"
                ),
                line=record.line,
                record=record.index,
                product_id=record.product_id,
                path=record.path,
                field="productId",
                value=truncate(record.product_id),
            ).bounded()
        )

    def _invalid(self, record: Record, message: str, *, field: str | None = None, value: str | None = None) -> None:
        self.problems.add(
            Problem(
                kind="validation",
                message=message,
                line=record.line,
                record=record.index,
                product_id=record.product_id,
                path=record.path,
                field=field,
                value=value,
            )
        )
