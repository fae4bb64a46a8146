"""Combined floor: the parse floor's loop + ``json.dumps`` + the produce floor's producer, in one
thread, no validation. A product with ``deleted="true"`` becomes a tombstone, like the product."""

from __future__ import annotations

import json

from bench.contestants._common import Producing, arguments, producing_summary
from bench.contestants._xml import products


def main() -> None:
    args = arguments(__doc__ or "")
    producing = Producing(args.bootstrap, args.topic)
    dumps = json.dumps
    producing.send_all(
        (record["id"], None if record.get("deleted") == "true" else dumps(record)) for record in products(args.file)
    )
    remaining = producing.finish()
    producing_summary(producing, remaining, records=producing.sent)


if __name__ == "__main__":
    main()
