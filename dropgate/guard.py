"""The stale-overwrite guard: never let an older state become the newest value of a key.

Per partner, a lock (DynamoDB, in the ledger table) is held from reading the key index, through
publishing, to writing the index back, so two files of one partner processed at the same time
cannot interleave their checks and their writes. Events older than the newest already published
for their key are skipped and counted as stale; with ``changed_only`` events whose state did not
change are skipped too. The index is only written after the broker acknowledged every event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dropgate.key_index import TRACKED_FIELDS, KeyIndex
from dropgate.key_positions import Positions
from dropgate.partner_index import FileRows, IndexUpdates, KeyIndexStore, PartnerIndex, update_rows
from dropgate.publishing import PositionSink
from dropgate.spool import EventSpool, SpoolEntry
from dropgate.terminal import shown

if TYPE_CHECKING:
    import numpy as np

SAMPLE_LIMIT = 5


class LockBusy(RuntimeError):
    """Another file of the same partner holds the lock; the invocation fails and is retried."""


@dataclass
class Verdicts:
    """What the guard decided, per category; ``samples`` name the first few keys of each."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    stale: int = 0
    deleted: int = 0
    published: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)

    def sample(self, category: str, text: str) -> None:
        found = self.samples.setdefault(category, [])
        if len(found) < SAMPLE_LIMIT:
            found.append(shown(text))  # sample keys are shown to operators (reprocess --dry-run)


class _Commits:
    """Work that must happen after the index is written and before the partner lock is released
    (the snapshot key set: written last, so a crash repeats tombstones instead of losing them)."""

    def __init__(self) -> None:
        self._after: list[Callable[[], None]] = []

    def on_commit(self, work: Callable[[], None]) -> None:
        self._after.append(work)

    def commit(self) -> None:
        for work in self._after:
            work()


class GuardSession(_Commits):
    """Classifies spooled events against the partner's key index and remembers what was selected.

    Two passes over the events, so only the shards their keys touch are read (:mod:`dropgate.
    index_shards`): the first hashes every key and partitions the rows by cell on disk, then
    reads each touched shard once and decides every row against it; the second yields, in file
    order, the events to publish. Memory holds one shard and a byte per event, whatever the
    partner's catalogue.
    """

    def __init__(
        self, index: PartnerIndex, *, changed_only: bool, directory: str | None = None, write: bool = True
    ) -> None:
        super().__init__()
        self.index = index
        self.changed_only = changed_only
        self.directory = directory
        self.verdicts = Verdicts()
        #: What the write-back writes; a dry run writes nothing, so keeps nothing.
        self.updates: IndexUpdates | None = IndexUpdates(directory) if write else None
        #: Where the broker put each published event (the publisher's delivery reports), written
        #: back with the index so ``dropgate key`` can fetch a key's value by offset.
        self.positions: Positions | None = Positions(directory) if write else None

    def select(
        self, entries: Callable[[], Iterable[SpoolEntry]], *, spool: EventSpool | None = None
    ) -> Iterator[SpoolEntry]:
        """Yield the events to publish; stale ones (and unchanged ones under changed_only) are held
        back. ``entries`` is called twice: each call gives the same events in the same order. With
        the ``spool`` they come from, its index rows are read instead of hashing every key again."""
        decided, by_record = self._decide(entries, spool)
        verdicts = self.verdicts
        # This loop runs once per event of the file, on the one publishing thread: the decisions as
        # bytes (a numpy element costs three times a byte's read) and a local count.
        publish, samples = decided.publish.tobytes(), decided.samples  # one byte per bool
        deleted = 0
        try:
            for ordinal, entry in enumerate(entries()):
                at = entry.record if by_record else ordinal
                if entry.value is None:
                    deleted += 1
                if at in samples:
                    category, detail = samples[at]
                    verdicts.sample(category, entry.key.decode(errors="replace") + detail)
                if publish[at]:
                    yield entry
        finally:
            verdicts.deleted += deleted

    def _decide(self, entries: Callable[[], Iterable[SpoolEntry]], spool: EventSpool | None) -> tuple[_Decided, bool]:
        import numpy as np

        rows = FileRows(self.directory)
        try:
            by_record = spool is not None and rows.add_spool(spool)
            if not by_record:
                rows.add(entries())
            decided = _Decided(np.zeros(rows.count, dtype=bool))
            touched = [shard for shard in self.index.layout.shards if rows.touch(shard)]
            if self.updates is not None:
                self.updates.begin()
            for shard, old in zip(touched, self.index.read(touched), strict=True):
                for lo, hi in rows.steps(shard):  # a bounded number of rows at a time
                    self._decide_shard(rows.in_cells(lo, hi), old, decided)
        finally:
            rows.close()
        decided.samples = _first_samples(decided.candidates)
        return decided, by_record

    def _decide_shard(self, rows: np.ndarray, index: KeyIndex, decided: _Decided) -> None:
        import numpy as np

        found, positions = index.lookup(rows["key"])
        old = index.entries[positions] if len(index) else rows  # rows: placeholder when empty
        stale = found & (old["as_of"] > rows["as_of"])
        same = found & ~stale & (old["state"] == rows["state"])
        changed = found & ~stale & ~same
        publish = ~stale & ~(same & self.changed_only)
        ordinals = rows["ordinal"]
        decided.publish[ordinals[publish]] = True
        verdicts = self.verdicts
        verdicts.new += int(np.count_nonzero(~found))
        verdicts.stale += int(np.count_nonzero(stale))
        verdicts.unchanged += int(np.count_nonzero(same))
        verdicts.changed += int(np.count_nonzero(changed))
        verdicts.published += int(np.count_nonzero(publish))
        candidates = decided.candidates
        for i in _first(ordinals, stale):
            candidates.append((int(ordinals[i]), "stale", ""))
        for i in _first(ordinals, ~found):
            candidates.append((int(ordinals[i]), "new", ""))
        for i in _first(ordinals, changed):
            candidates.append((int(ordinals[i]), "changed", ": " + _changed_fields(old[i], rows[i])))
        # Every event that is not stale moves its key's newest asOf forward, also one held back as
        # unchanged: otherwise an older replay with a different state would look "newer" than it.
        # (One held back keeps the position of the event still on the topic.)
        if self.updates is not None:
            self.updates.add(update_rows(rows[~stale], publish[~stale]))

    def write_back(self) -> None:
        """Write every shard this session's updates touch (cutting the ones grown too large), then
        the layout if it changed, then drop what it replaced."""
        if self.updates is None:
            raise RuntimeError("a dry-run guard session writes nothing back")
        self.index.write_back(self.updates, self.positions)

    def close(self) -> None:
        """Remove the scratch files, written back or not (a failed publish, a dry run)."""
        if self.updates is not None:
            self.updates.close()
        if self.positions is not None:
            self.positions.close()


@dataclass
class _Decided:
    publish: np.ndarray
    candidates: list[tuple[int, str, str]] = field(default_factory=list)
    samples: dict[int, tuple[str, str]] = field(default_factory=dict)


def _first(ordinals: np.ndarray, mask: np.ndarray) -> list[int]:
    """Positions of the :data:`SAMPLE_LIMIT` rows with the lowest ordinals among those ``mask`` marks."""
    import numpy as np

    chosen = np.flatnonzero(mask)
    if len(chosen) > SAMPLE_LIMIT:
        chosen = chosen[np.argsort(ordinals[chosen], kind="stable")[:SAMPLE_LIMIT]]
    return [int(i) for i in chosen]


def _first_samples(candidates: list[tuple[int, str, str]]) -> dict[int, tuple[str, str]]:
    """The first :data:`SAMPLE_LIMIT` events of each category, in file order, by ordinal."""
    kept: dict[int, tuple[str, str]] = {}
    per_category: dict[str, int] = {}
    for ordinal, category, detail in sorted(candidates):
        if per_category.get(category, 0) < SAMPLE_LIMIT:
            per_category[category] = per_category.get(category, 0) + 1
            kept[ordinal] = (category, detail)
    return kept


def _changed_fields(old: Any, new: Any) -> str:
    if new["state"] == 0:
        return "(deleted)"
    if old["state"] == 0:
        return "(re-created)"
    names = [name for j, name in enumerate(TRACKED_FIELDS) if int(old["fields"][j]) != int(new["fields"][j])]
    return ", ".join(names) or "state"


class PartnerLock(Protocol):
    """A lease per partner (DynamoDB in production: :mod:`dropgate.adapters.dynamo_lock`)."""

    def acquire(self, partner: str, owner: str, *, ttl_s: float, wait_until: float) -> None:
        """Take the lease, waiting until ``wait_until`` (monotonic), else raise :class:`LockBusy`."""

    def release(self, partner: str, owner: str) -> None:
        """Give the lease back, if it is still ``owner``'s."""


class GuardedSession(Protocol):
    """One file's publish under the guard: what to publish, what was decided, what to do on commit."""

    verdicts: Verdicts

    @property
    def positions(self) -> PositionSink | None:
        """Where the publisher reports each acknowledged event's partition and offset; ``None``: no
        state is kept, so the publisher need not ask the broker for a report per event."""

    def select(
        self, entries: Callable[[], Iterable[SpoolEntry]], *, spool: EventSpool | None = None
    ) -> Iterator[SpoolEntry]:
        """The events to publish, in order; ``entries`` may be called more than once and gives the
        same events each time (``spool``: where they come from, if they do)."""

    def on_commit(self, work: Callable[[], None]) -> None: ...


class PublishGuard(Protocol):
    #: Whether sessions read each event's state and field hashes (building them is not free).
    reads_state: bool

    def session(
        self,
        partner: str,
        *,
        bucket: str | None = None,
        deadline: float | None = None,
        changed_only: bool = False,
        write: bool = True,
    ) -> AbstractContextManager[GuardedSession]: ...


class PassThroughSession(_Commits):
    """The session of :class:`NullGuard`: selects everything, remembers nothing.

    Classifying against an empty index would call every key new anyway, while hashing each key
    and holding a million index rows until the end (tens of MB) for an index nobody keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.verdicts = Verdicts()
        self.positions: PositionSink | None = None

    def select(
        self, entries: Callable[[], Iterable[SpoolEntry]], *, spool: EventSpool | None = None
    ) -> Iterator[SpoolEntry]:
        verdicts = self.verdicts
        for entry in entries():
            verdicts.new += 1
            verdicts.published += 1
            if entry.value is None:
                verdicts.deleted += 1
            yield entry


class NullGuard:
    """No guard (local files): every event is published, nothing is remembered."""

    reads_state = False

    @contextmanager
    def session(
        self,
        partner: str,
        *,
        bucket: str | None = None,
        deadline: float | None = None,
        changed_only: bool = False,
        write: bool = True,
    ) -> Iterator[PassThroughSession]:
        session = PassThroughSession()
        yield session
        if write:
            session.commit()


class KeyIndexGuard:
    reads_state = True

    def __init__(
        self,
        store: KeyIndexStore,
        lock: PartnerLock,
        *,
        lock_ttl_s: float = 900.0,
        lock_wait_s: float = 60.0,
        directory: str | None = None,
    ) -> None:
        self.store = store
        self.lock = lock
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self.directory = directory

    def _session(self, partner: str, bucket: str | None, changed_only: bool, *, write: bool = True) -> GuardSession:
        index = PartnerIndex(self.store, partner, bucket)
        return GuardSession(index, changed_only=changed_only, directory=self.directory, write=write)

    @contextmanager
    def session(
        self,
        partner: str,
        *,
        bucket: str | None = None,
        deadline: float | None = None,
        changed_only: bool = False,
        write: bool = True,
    ) -> Iterator[GuardSession]:
        """Lock the partner, load its index, yield; on a clean exit write the updated index back.

        ``write=False`` (dry-run) reads without locking and writes nothing.
        """
        if not write:
            dry = self._session(partner, bucket, changed_only, write=False)
            try:
                yield dry
            finally:
                dry.close()
            return
        owner = uuid.uuid4().hex
        wait_until = (
            min(deadline, time.monotonic() + self.lock_wait_s) if deadline else time.monotonic() + self.lock_wait_s
        )
        ttl = (deadline - time.monotonic() + 60) if deadline else self.lock_ttl_s
        self.lock.acquire(partner, owner, ttl_s=ttl, wait_until=wait_until)
        session = None
        try:
            session = self._session(partner, bucket, changed_only)
            yield session
            session.write_back()
            session.commit()
        finally:
            if session is not None:
                session.close()
            self.lock.release(partner, owner)
