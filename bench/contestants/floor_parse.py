"""Parse floor: iterparse every product into a dict, nothing else (no broker)."""

from __future__ import annotations

from bench.contestants._common import arguments, done
from bench.contestants._xml import products


def main() -> None:
    args = arguments(__doc__ or "", needs_broker=False)
    records = deleted = 0
    for record in products(args.file):
        records += 1
        if record.get("deleted") == "true":
            deleted += 1
    done({"records": records, "deleted": deleted})


if __name__ == "__main__":
    main()
