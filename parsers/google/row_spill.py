"""What the local inventory parser needs to group store rows by product: a row spill it is given.

A product's stores may be spread through the file, so nothing can be grouped before the last item,
and a feed can hold millions of store rows. Where they wait is not the parser's business (parsers
read the stream they are given and touch nothing else): the caller passes a factory, and the
product's (``dropgate.adapters.row_spill``) keeps them in a scratch file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

#: product_id, item, item line, store, store_code line, quantity, availability, amount, currency, price line, bad
StoreRow = tuple[
    str, int, int | None, str | None, int | None, int | None, str | None, str | None, str | None, int | None, int
]


class RowSpill(Protocol):
    """Store rows added one by one, then read back grouped by product.

    A context manager: whatever it holds is gone on exit, however the parse ends (exhausted, closed
    early, or stopped by a syntax error or a limit).
    """

    def __enter__(self) -> RowSpill: ...

    def __exit__(self, *exc: object) -> None: ...

    def add(self, row: StoreRow) -> None: ...

    def by_product(self) -> Iterator[StoreRow]:
        """Every row, grouped by product in productId order, each product's rows in item (file) order."""
        ...


#: Makes an empty row spill, one per parse.
RowSpillFactory = Callable[[], RowSpill]
