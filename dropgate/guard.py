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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from dropgate.key_index import TRACKED_FIELDS, KeyIndex, key_hash
from dropgate.spool import SpoolEntry
from dropgate.terminal import shown

_CHUNK = 8192
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
    """Classifies spooled events against the index and remembers what was selected."""

    def __init__(self, index: KeyIndex, *, changed_only: bool) -> None:
        super().__init__()
        self.index = index
        self.changed_only = changed_only
        self.verdicts = Verdicts()
        self._updates: list[Any] = []

    def select(self, entries: Iterator[SpoolEntry]) -> Iterator[SpoolEntry]:
        """Yield the events to publish; stale ones (and unchanged ones under changed_only) are held back."""
        chunk: list[SpoolEntry] = []
        for entry in entries:
            chunk.append(entry)
            if len(chunk) == _CHUNK:
                yield from self._decide(chunk)
                chunk = []
        if chunk:
            yield from self._decide(chunk)

    def _decide(self, chunk: list[SpoolEntry]) -> Iterator[SpoolEntry]:
        import numpy as np

        n = len(chunk)
        rows = KeyIndex.new_entries([(key_hash(e.key), e.as_of_ms, e.state, e.fields) for e in chunk])
        found, positions = self.index.lookup(rows["key"])
        old = self.index.entries[positions] if len(self.index) else rows  # rows: placeholder when empty
        stale = found & (old["as_of"] > rows["as_of"])
        same = found & ~stale & (old["state"] == rows["state"])
        changed = found & ~stale & ~same
        publish = ~stale & ~(same & self.changed_only)
        verdicts = self.verdicts
        verdicts.new += int(np.count_nonzero(~found))
        verdicts.stale += int(np.count_nonzero(stale))
        verdicts.unchanged += int(np.count_nonzero(same))
        verdicts.changed += int(np.count_nonzero(changed))
        verdicts.published += int(np.count_nonzero(publish))
        for i in range(n):
            entry = chunk[i]
            if entry.value is None:
                verdicts.deleted += 1
            if stale[i]:
                verdicts.sample("stale", entry.key.decode(errors="replace"))
            elif changed[i] and len(verdicts.samples.get("changed", ())) < SAMPLE_LIMIT:
                names = [
                    name
                    for j, name in enumerate(TRACKED_FIELDS)
                    if int(old["fields"][i][j]) != int(rows["fields"][i][j])
                ]
                if rows["state"][i] == 0:
                    names = ["(deleted)"]
                elif old["state"][i] == 0:
                    names = ["(re-created)"]
                verdicts.sample("changed", f"{entry.key.decode(errors='replace')}: {', '.join(names) or 'state'}")
            elif not found[i]:
                verdicts.sample("new", entry.key.decode(errors="replace"))
            if publish[i]:
                yield entry
        # Every event that is not stale moves its key's newest asOf forward, also one held back as
        # unchanged: otherwise an older replay with a different state would look "newer" than it.
        self._updates.append(rows[~stale])

    def updated_index(self) -> KeyIndex:
        import numpy as np

        if not self._updates:
            return self.index
        return self.index.merged(np.concatenate(self._updates))


class KeyIndexStore(Protocol):
    def load(self, partner: str, bucket: str | None) -> KeyIndex: ...

    def save(self, partner: str, bucket: str | None, index: KeyIndex) -> None: ...


class PartnerLock(Protocol):
    """A lease per partner (DynamoDB in production: :mod:`dropgate.adapters.dynamo_lock`)."""

    def acquire(self, partner: str, owner: str, *, ttl_s: float, wait_until: float) -> None:
        """Take the lease, waiting until ``wait_until`` (monotonic), else raise :class:`LockBusy`."""

    def release(self, partner: str, owner: str) -> None:
        """Give the lease back, if it is still ``owner``'s."""


class GuardedSession(Protocol):
    """One file's publish under the guard: what to publish, what was decided, what to do on commit."""

    verdicts: Verdicts

    def select(self, entries: Iterator[SpoolEntry]) -> Iterator[SpoolEntry]: ...

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

    def select(self, entries: Iterator[SpoolEntry]) -> Iterator[SpoolEntry]:
        verdicts = self.verdicts
        for entry in entries:
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
        self, store: KeyIndexStore, lock: PartnerLock, *, lock_ttl_s: float = 900.0, lock_wait_s: float = 60.0
    ) -> None:
        self.store = store
        self.lock = lock
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s

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
            yield GuardSession(self.store.load(partner, bucket), changed_only=changed_only)
            return
        owner = uuid.uuid4().hex
        wait_until = (
            min(deadline, time.monotonic() + self.lock_wait_s) if deadline else time.monotonic() + self.lock_wait_s
        )
        ttl = (deadline - time.monotonic() + 60) if deadline else self.lock_ttl_s
        self.lock.acquire(partner, owner, ttl_s=ttl, wait_until=wait_until)
        try:
            session = GuardSession(self.store.load(partner, bucket), changed_only=changed_only)
            yield session
            self.store.save(partner, bucket, session.updated_index())
            session.commit()
        finally:
            self.lock.release(partner, owner)
