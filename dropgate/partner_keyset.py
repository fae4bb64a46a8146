"""One partner's snapshot key set in shards, as snapshot deletes read and write it.

The key set (every key the partner has live, as far as dropgate knows: :mod:`dropgate.snapshots`)
is cut like the key index (:mod:`dropgate.index_shards`): by the top bits of each key's hash into
shards of about 32,768 keys, gzipped, with a manifest holding the set's header and its shards. A
file that does not delete (a delta between snapshots, a partial or an older snapshot) reads and
rewrites only the shards its own keys fall in; a full snapshot that deletes reads every shard (it
is the whole catalogue either way) and writes the set anew.

Write order (the partner lock is held; the set a full snapshot leaves is written only after the
broker acknowledged its tombstones): shards, then the manifest, then the shards the manifest no
longer names, then the single object of before. A file that does not delete rewrites its shards in
place (adding its keys: a crash leaves a shard with them, which its retry adds again). A set
written anew (a full snapshot, a migration) goes to the next *generation* of shard names, so a
crash before its manifest leaves the set before whole, and the retry repeats the same tombstones.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import groupby

from dropgate.index_shards import CELLS, Cutter, Shard, ShardLayout
from dropgate.snapshots import KeySetManifest, SnapshotHeader, SnapshotKeys, SnapshotStore

_Rows = Iterator[tuple[int, bytes]]


class PartnerKeySet:
    def __init__(self, store: SnapshotStore, partner: str, bucket: str | None) -> None:
        self.store = store
        self.partner = partner
        self.bucket = bucket
        self.manifest = store.manifest(partner, bucket)
        self.legacy_header: SnapshotHeader | None = None
        self.has_legacy = False
        if self.manifest is None:
            with store.legacy(partner, bucket) as stored:
                if stored is not None:
                    self.has_legacy, self.legacy_header = True, stored.header
        #: The shards whose keys were added to the file's SnapshotKeys (``None``: the whole set).
        self._loaded: list[Shard] | None = None
        self._loaded_count = 0

    @property
    def header(self) -> SnapshotHeader | None:
        return self.manifest.header if self.manifest is not None else self.legacy_header

    def load_all(self, keys: SnapshotKeys) -> None:
        """Every stored key into ``keys`` (a full snapshot compares the whole set)."""
        if self.manifest is not None:
            self._load(keys, list(self.manifest.layout.shards))
            return
        if self.has_legacy:
            with self.store.legacy(self.partner, self.bucket) as stored:
                if stored is not None:
                    keys.add_previous(stored.keys())
        self._loaded = None

    def load_touched(self, keys: SnapshotKeys) -> None:
        """The stored keys of the shards this file's keys fall in (a set of before shards: all)."""
        if self.manifest is None:
            self.load_all(keys)
            return
        shards = self.manifest.layout.shards
        starts = [shard.lo for shard in shards]
        touched = {bisect_right(starts, cell) - 1 for cell in keys.current_cells()}
        self._load(keys, [shards[at] for at in sorted(touched)])

    def _load(self, keys: SnapshotKeys, shards: list[Shard]) -> None:
        count = 0
        assert self.manifest is not None
        for stored in self.store.read(self.partner, self.bucket, self.manifest.generation, shards):
            keys.add_previous(stored)
            count += len(stored)
        self._loaded, self._loaded_count = shards, count

    def write_merged(self, keys: SnapshotKeys, base: SnapshotHeader) -> None:
        """The loaded shards with this file applied (its live keys added, its own tombstones
        removed), under ``base``'s header; the whole set anew if it had no shards yet."""
        if self.manifest is None or self._loaded is None:
            self.replace(keys.merged_by_cell(), base)
            return
        generation = self.manifest.generation
        cuts, written = self._write(self._loaded, keys.merged_by_cell(), generation)
        layout = self.manifest.layout
        replaced = [shard for shard, parts in cuts.items() if parts != [shard]]
        for shard in replaced:
            layout = layout.replaced(shard, cuts[shard])
        count = self.manifest.header.count - self._loaded_count + written
        self._commit(KeySetManifest(replace(base, count=count), layout, generation), replaced, generation)
        self._loaded_count = written

    def replace(self, rows: _Rows, header: SnapshotHeader) -> None:
        """The whole set is ``rows`` (by cell, sorted within one), under ``header``'s fields: written
        as the next generation, so until its manifest is written the set before stays whole."""
        before = self.manifest
        generation = before.generation + 1 if before is not None else 1
        cuts, count = self._write([Shard(0, CELLS)], rows, generation)
        shards = [part for parts in cuts.values() for part in parts]
        self._commit(KeySetManifest(replace(header, count=count), ShardLayout(shards), generation), (), generation)
        if before is not None:
            self.store.delete(self.partner, self.bucket, before.generation, before.layout.shards)
        self._loaded, self._loaded_count = None, count

    def _write(self, shards: Sequence[Shard], rows: _Rows, generation: int) -> tuple[dict[Shard, list[Shard]], int]:
        """Write ``rows`` as the parts of ``shards``, part by part; returns each shard's parts and
        how many keys were written."""
        cuts: dict[Shard, list[Shard]] = {}
        written = 0

        def parts() -> Iterator[tuple[Shard, list[bytes]]]:
            nonlocal written
            for shard, part, keys in _cut_by_shard(shards, rows):
                cuts.setdefault(shard, []).append(part)
                written += len(keys)
                yield part, keys

        self.store.write(self.partner, self.bucket, generation, parts())
        return cuts, written

    def _commit(self, manifest: KeySetManifest, replaced: Sequence[Shard], generation: int) -> None:
        self.store.write_manifest(self.partner, self.bucket, manifest)
        self.manifest = manifest
        if replaced:
            self.store.delete(self.partner, self.bucket, generation, replaced)
        if self.has_legacy:
            self.store.drop_legacy(self.partner, self.bucket)
            self.has_legacy = False


def _concat(pieces: list[list[bytes]]) -> list[bytes]:
    return [key for piece in pieces for key in piece]


def _cut_by_shard(shards: Sequence[Shard], rows: _Rows) -> Iterator[tuple[Shard, Shard, list[bytes]]]:
    """(shard, part, its keys) for each shard in cell order, its keys from ``rows`` cut into parts
    (one part: the shard as it is), each part as soon as it is cut. ``rows`` hold only cells of
    these shards, by cell."""
    groups = groupby(rows, key=lambda row: row[0])
    pending = next(groups, None)
    for shard in shards:
        cutter: Cutter[list[bytes], list[bytes]] = Cutter(shard, _concat)
        while pending is not None and pending[0] < shard.hi:
            cell, cell_rows = pending
            if cell < shard.lo:
                raise RuntimeError(f"key set cell {cell} belongs to no shard being written")
            cutter.add(cell, [key for _cell, key in cell_rows])
            for part, keys in cutter.parts():
                yield shard, part, keys
            pending = next(groups, None)
        for part, keys in cutter.finish():
            yield shard, part, keys
    if pending is not None:
        raise RuntimeError(f"key set cell {pending[0]} belongs to no shard being written")
