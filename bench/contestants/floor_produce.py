"""Produce floor: N pre-serialized 300-byte JSON values keyed P0000001…, produced with the tuned
idempotent producer, then flush. The values are built before the clock that matters starts:
``build_seconds`` in the summary line is subtracted by the harness."""

from __future__ import annotations

import time

from bench.contestants._common import T0, Producing, arguments, producing_summary

VALUE_BYTES = 300


def values(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(1, n + 1):
        key = b"P%07d" % i
        head = b'{"productId":"%s","partnerId":"acme","quantity":%d,"pad":"' % (key, i % 500)
        out.append((key, head + b"x" * (VALUE_BYTES - len(head) - 2) + b'"}'))
    return out


def main() -> None:
    args = arguments(__doc__ or "")
    if args.products is None:
        raise SystemExit("--products is required")
    items = values(args.products)
    build_seconds = time.perf_counter() - T0  # from this module's import to the values being ready
    producing = Producing(args.bootstrap, args.topic)
    producing.send_all(items)
    remaining = producing.finish()
    producing_summary(producing, remaining, records=args.products, build_seconds=round(build_seconds, 3))


if __name__ == "__main__":
    main()
