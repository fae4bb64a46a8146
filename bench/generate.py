"""Write a synthetic drop in the generic partner format, deterministically, without holding it in memory.

    python -m bench.generate --products 1000000 --out bench/out/generic-1000000.xml [--gzip] [--seed 42]

The same ``(products, seed, gzip)`` always gives byte-identical output (gzip header mtime and file
name are blanked). Products are ``P0000001``…, each valid under ``parsers/generic.py``:

- ``sku`` ``ACME-0000001``, a name of adjective + noun + model number;
- 1 to 4 distinct locations (``WH1``…``WH9``, ``STORE-001``…``STORE-250``), ``quantity`` = their sum;
- ``availability`` derived from the quantity, occasionally ``preorder``/``backorder``, and left out
  now and then so the parser's default is exercised too;
- a price in USD or EUR with two decimals;
- about 1% are tombstones: ``<product id="…" deleted="true"/>``.

Every product, tombstone or not, becomes exactly one event keyed by its (unique) id, so a
correct ingest publishes ``products`` events with ``products`` distinct keys.
"""

from __future__ import annotations

import argparse
import gzip as gzip_module
import io
import json
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

#: Bump when the output for a given (products, seed) changes, so cached files are regenerated.
GENERATOR_VERSION = 1
PARTNER = "acme"
GENERATED_AT = "2026-11-20T06:00:00Z"
DELETED_RATE = 0.01
_CHUNK = 2_000  # products formatted per write

_ADJECTIVES = (
    "Sturdy", "Compact", "Deluxe", "Classic", "Rugged", "Slim", "Heavy-Duty", "Portable", "Premium",
    "Eco", "Smart", "Wireless", "Ergonomic", "Foldable", "Stainless", "Vintage", "Modular", "Quiet",
    "Waterproof", "Adjustable", "Insulated", "Magnetic", "Cordless", "Reinforced", "Lightweight",
)  # fmt: skip
_NOUNS = (
    "Widget", "Gadget", "Sprocket", "Gizmo", "Bracket", "Lamp", "Kettle", "Drill", "Backpack", "Bottle",
    "Chair", "Desk", "Router", "Speaker", "Blender", "Toaster", "Wrench", "Hammer", "Ladder", "Tent",
    "Jacket", "Helmet", "Cable", "Charger", "Monitor", "Keyboard", "Clamp", "Hose", "Bucket", "Shelf",
)  # fmt: skip
_LOCATIONS = tuple(f"WH{n}" for n in range(1, 10)) + tuple(f"STORE-{n:03d}" for n in range(1, 251))
_LOCATION_COUNTS = (1, 2, 3, 4)
_LOCATION_WEIGHTS = (40, 30, 20, 10)


@dataclass(frozen=True, slots=True)
class Generated:
    path: str
    products: int
    deleted: int
    seed: int
    gzip: bool
    bytes: int  # size on disk
    xml_bytes: int  # size of the XML (after gunzip)
    version: int = GENERATOR_VERSION

    @property
    def expected_events(self) -> int:
        """One event per product; a tombstone is an event too."""
        return self.products

    @property
    def expected_keys(self) -> int:
        return self.products


def _product(rng: random.Random, index: int, out: list[str]) -> bool:
    """Append one product's lines to ``out``; True when it is a tombstone."""
    pid = f"P{index:07d}"
    if rng.random() < DELETED_RATE:
        out.append(f'  <product id="{pid}" deleted="true"/>\n')
        return True
    count = rng.choices(_LOCATION_COUNTS, _LOCATION_WEIGHTS)[0]
    locations = rng.sample(_LOCATIONS, count)
    quantities = [0 if rng.random() < 0.15 else rng.randint(1, 500) for _ in locations]
    quantity = sum(quantities)
    roll = rng.random()
    if roll < 0.02:
        availability: str | None = "preorder"
    elif roll < 0.04:
        availability = "backorder"
    elif roll < 0.09:
        availability = None  # omitted: the parser derives it from the quantity
    else:
        availability = "in_stock" if quantity else "out_of_stock"
    currency = "USD" if rng.random() < 0.8 else "EUR"
    cents = rng.randint(99, 99_999)
    name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.randint(1, 999)}"
    out.append(
        f'  <product id="{pid}">\n'
        f"    <sku>{PARTNER.upper()}-{index:07d}</sku>\n"
        f"    <name>{escape(name)}</name>\n"
        f"    <quantity>{quantity}</quantity>\n"
    )
    if availability is not None:
        out.append(f"    <availability>{availability}</availability>\n")
    out.append(f'    <price currency="{currency}">{cents // 100}.{cents % 100:02d}</price>\n    <locations>\n')
    out.extend(
        f'      <location id="{loc}" quantity="{qty}"/>\n' for loc, qty in zip(locations, quantities, strict=True)
    )
    out.append("    </locations>\n  </product>\n")
    return False


def generate(path: str | os.PathLike[str], products: int, gzip: bool = False, seed: int = 42) -> Generated:
    """Write ``products`` products to ``path`` (atomically: a ``.tmp`` sibling, then renamed)."""
    if products < 0:
        raise ValueError("products must be >= 0")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    rng = random.Random(seed)
    deleted = 0
    xml_bytes = 0
    try:
        with tmp.open("wb") as raw:
            sink: io.BufferedIOBase | gzip_module.GzipFile = raw
            if gzip:
                # filename="" and mtime=0: the same input gives the same bytes wherever it is written.
                sink = gzip_module.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
            try:

                def write(text: str) -> None:
                    nonlocal xml_bytes
                    data = text.encode("utf-8")
                    xml_bytes += len(data)
                    sink.write(data)

                write(
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f'<inventory partner="{PARTNER}" generatedAt="{GENERATED_AT}">\n'
                )
                chunk: list[str] = []
                for index in range(1, products + 1):
                    deleted += _product(rng, index, chunk)
                    if index % _CHUNK == 0:
                        write("".join(chunk))
                        chunk.clear()
                write("".join(chunk) + "</inventory>\n")
            finally:
                if sink is not raw:
                    sink.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Generated(
        path=str(target),
        products=products,
        deleted=deleted,
        seed=seed,
        gzip=gzip,
        bytes=target.stat().st_size,
        xml_bytes=xml_bytes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, required=True, help="number of products (ids P0000001…)")
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument("--gzip", action="store_true", help="write a gzip file")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    result = generate(args.out, args.products, gzip=args.gzip, seed=args.seed)
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
