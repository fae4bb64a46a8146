"""The Google local inventory parser's row spill: store rows in a scratch SQLite file.

The parser (``parsers.google.local``) groups a feed's store rows by product, and a feed can hold a
million of them spread through the file. Rather than holding them in memory, each row goes to a
temporary SQLite file (stdlib, one file to delete, and its sorter spills to disk once past the small
page cache), which is then read back with one ``ORDER BY productId``: memory stays flat, disk holds
the rows (roughly 100 bytes each).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator

from parsers.google.row_spill import StoreRow

#: Rows buffered before one ``executemany``: few round trips, a few hundred KiB at most.
_BATCH = 2_000
#: SQLite page cache in KiB (negative ``cache_size``); also bounds its sorter's memory before it spills.
_CACHE_KIB = 2_048


class SqliteRowSpill:
    """The store rows of one file in a temporary SQLite file, deleted on exit whatever happens."""

    def __init__(self) -> None:
        self._pending: list[StoreRow] = []
        self._path: str | None = None
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> SqliteRowSpill:
        descriptor, self._path = tempfile.mkstemp(prefix="dropgate-google-local-", suffix=".sqlite")
        os.close(descriptor)
        try:
            self._db = sqlite3.connect(self._path, isolation_level=None)
            for pragma in (
                "journal_mode = OFF",  # a scratch file: nothing to roll back to, no -journal file to clean
                "synchronous = OFF",
                f"cache_size = -{_CACHE_KIB}",
                "temp_store = FILE",
                "locking_mode = EXCLUSIVE",
            ):
                self._db.execute(f"PRAGMA {pragma}")
            self._db.execute(
                "CREATE TABLE rows (product_id TEXT NOT NULL, item INTEGER NOT NULL, line INTEGER, store TEXT,"
                " store_line INTEGER, quantity INTEGER, availability TEXT, amount TEXT, currency TEXT,"
                " price_line INTEGER, bad INTEGER NOT NULL)"
            )
            self._db.execute("BEGIN")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None

    def add(self, row: StoreRow) -> None:
        self._pending.append(row)
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        assert self._db is not None
        self._db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
        self._pending.clear()

    def by_product(self) -> Iterator[StoreRow]:
        """Every row, grouped by product in productId order, each product's rows in file order."""
        self._flush()
        assert self._db is not None
        yield from self._db.execute("SELECT * FROM rows ORDER BY product_id, item")
