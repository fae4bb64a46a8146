"""The parse floor's loop, shared by ``floor_parse`` and ``floor_combined``: lxml's iterparse over
``<product>`` elements, one dict per product from its attributes and children, then the element is
cleared and its previous siblings deleted so memory stays flat. No validation, no limits, nothing
else."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

from lxml import etree


def products(path: str) -> Iterator[dict[str, Any]]:
    source: Any = gzip.open(path, "rb") if path.endswith(".gz") else path  # noqa: SIM115 - closed below
    try:
        for _, elem in etree.iterparse(source, events=("end",), tag="product"):
            record: dict[str, Any] = dict(elem.attrib)
            for child in elem:
                if len(child):  # <locations>: a list of the <location> attributes
                    record[child.tag] = [dict(grandchild.attrib) for grandchild in child]
                else:
                    record[child.tag] = child.text
                    if child.attrib:  # <price currency="…">
                        record.update(child.attrib)
            yield record
            elem.clear()
            while elem.getprevious() is not None:
                del elem.getparent()[0]
    finally:
        if not isinstance(source, str):
            source.close()
