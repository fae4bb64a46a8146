"""Peer: what a user would write with pandas. ``pandas.read_xml(path, xpath="//product",
parser="lxml")`` (the whole document in memory, child elements flattened into columns), then per
row a pydantic model (the six flat fields) → ``model_dump_json()`` → produce; ``deleted="true"`` rows → tombstones."""

from __future__ import annotations

from bench.contestants._common import Producing, arguments, producing_summary


def main() -> None:
    args = arguments(__doc__ or "")
    import pandas as pd

    from bench.contestants._model import FlatProduct

    frame = pd.read_xml(args.file, xpath="//product", parser="lxml")
    # NaN (missing element) → None, so optional fields validate; numbers come back as floats.
    frame = frame.astype(object).where(frame.notna(), None)
    producing = Producing(args.bootstrap, args.topic)
    for row in frame.to_dict("records"):
        if row.get("deleted") in (True, "true"):  # read_xml infers a bool column
            producing.send(row["id"], None)
        else:
            producing.send(row["id"], FlatProduct.model_validate(row).model_dump_json())
    remaining = producing.finish()
    producing_summary(producing, remaining, records=producing.sent)


if __name__ == "__main__":
    main()
