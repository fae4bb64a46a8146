"""What a file costs against the size of its partner's catalogue (issue 16): a ten-product delta
and a 100,000-product file, for a partner with no state (new) and with 100k, 1M and 10M keys.

    python -m bench.state                                   # what `make bench` runs first
    python -m bench.state --catalogues 0 100000 --repeat 1  # quicker

Each run: moto's server (reset), the drop bucket and ledger table, the partner's key index
synthesised straight into S3 as the product writes it (shards and layout), the file uploaded; then
``dropgate ingest s3://…`` in its own process, measured like every ``bench.run`` contestant (wall,
CPU, peak RSS of the process), with the ledger and the stale guard on. The catalogue holds the
file's own products (P0000000…, hashed as the product hashes them, a day older than the file, so
every event is a change) and, for the rest, random 64-bit key hashes: ten million real ids would
cost minutes to hash and say nothing more. A run counts only if the summary line says every
event was published.

Also counts the S3 requests one file makes (``--requests``, in process, moto in memory): each
boto3 call dropgate makes is counted by operation.

Writes ``bench/out/state.json`` and prints a table (``bench/out/state.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.memory import OUT, drop_file, dropgate_command, run_measured
from bench.run import _SUMMARY, PARTITIONS, PARTNER, S3_BUCKET, S3Stage, _child_env

CATALOGUES = (0, 100_000, 1_000_000, 10_000_000)
FILES = (10, 100_000)
DAY_MS = 86_400_000


def synthesised_index(catalogue: int, file_products: int, as_of_ms: int) -> Any:
    """``catalogue`` keys: the file's own (real hashes) and random ones for the rest, sorted."""
    import numpy as np

    from dropgate.key_index import KeyIndex, index_dtype, key_hash

    if catalogue == 0:
        return KeyIndex.empty()
    real = min(catalogue, file_products)
    keys = np.empty(catalogue, dtype=np.uint64)
    keys[:real] = np.fromiter((key_hash(f"P{i:07d}".encode()) for i in range(real)), np.uint64, real)
    keys[real:] = np.random.default_rng(16).integers(0, 2**64, catalogue - real, dtype=np.uint64, endpoint=False)
    keys.sort()  # sorting the keys alone: a structured array sorts ten times slower
    rows = np.zeros(catalogue, dtype=index_dtype())
    rows["key"] = keys
    rows["as_of"] = as_of_ms
    rows["state"] = 1
    return KeyIndex(rows)


def seed_state(s3: Any, catalogue: int, file_products: int, as_of_ms: int) -> int:
    """Write the partner's index as the product would have; returns how many shards."""
    from dropgate.adapters.s3_state import S3KeyIndexStore
    from dropgate.index_shards import ShardLayout, migrated

    if catalogue == 0:
        return 0
    store = S3KeyIndexStore(s3, S3_BUCKET)
    parts = list(migrated(synthesised_index(catalogue, file_products, as_of_ms)))
    store.write(PARTNER, S3_BUCKET, parts)
    store.write_layout(PARTNER, S3_BUCKET, ShardLayout([shard for shard, _ in parts]))
    return len(parts)


def _file_as_of_ms(path: str) -> int:
    """The file's own ``generatedAt`` (the generator writes it in the root's first line)."""
    import gzip
    import re
    from datetime import datetime

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        head = handle.read(4096).decode()
    stamp = re.search(r'generatedAt="([^"]+)"', head)
    if stamp is None:
        raise RuntimeError(f"{path}: no generatedAt in its head")
    return int(datetime.fromisoformat(stamp[1].replace("Z", "+00:00")).timestamp() * 1000)


def measure_one(stage: S3Stage, catalogue: int, products: int, out_dir: Path, timeout: float) -> dict[str, Any]:
    import boto3

    from devstack.broker import LocalBroker

    made = drop_file(products, "plain", 42, out_dir)
    aws_env, uri = stage.prepare(made)
    session = boto3.session.Session(
        aws_access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=aws_env["AWS_SESSION_TOKEN"],
        region_name=aws_env["AWS_DEFAULT_REGION"],
    )
    seeded = time.perf_counter()
    shards = seed_state(
        session.client("s3", endpoint_url=stage.aws.endpoint), catalogue, products, _file_as_of_ms(made.path) - DAY_MS
    )
    seed_seconds = time.perf_counter() - seeded
    run: dict[str, Any] = {"catalogue": catalogue, "products": products, "shards": shards, "seed_s": seed_seconds}
    with LocalBroker() as broker:
        env = _child_env(
            {
                **aws_env,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "DROPGATE_TOPIC": f"bench.state.{catalogue}.{products}.{time.time_ns()}",
                "DROPGATE_TOPIC_PARTITIONS": str(PARTITIONS),
            }
        )
        log = out_dir / "logs" / f"state-{catalogue}-{products}-{time.strftime('%Y%m%dT%H%M%S')}"
        log.parent.mkdir(parents=True, exist_ok=True)
        child = run_measured([*dropgate_command(), "ingest", uri], env, timeout, log)
    match = _SUMMARY.search(child.stdout)
    run.update(
        wall_s=child.seconds,
        cpu_s=child.cpu_seconds,
        rss_mib=(max(child.maxrss_bytes or 0, child.polled_bytes) / 2**20),
        ok=child.returncode == 0
        and match is not None
        and match["status"] == "published"
        and int(match["events"]) == made.products,
        summary=child.stdout.strip().splitlines()[-1:] or [""],
    )
    if not run["ok"]:
        run["stderr"] = child.stderr[-2000:]
    return run


def count_requests(catalogue: int, products: int, out_dir: Path) -> dict[str, int]:
    """The AWS calls one file makes, by service and operation (moto in memory, a real broker)."""
    import os

    import boto3
    from botocore.client import BaseClient
    from moto import mock_aws

    from devstack.broker import LocalBroker
    from dropgate.app import build_ingestor
    from dropgate.config import Settings
    from dropgate.provision import ensure_bucket, ensure_ledger_table
    from dropgate.storage import ObjectRef

    made = drop_file(products, "plain", 42, out_dir)
    counted: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        counted[f"{self.meta.service_model.service_name} {operation}"] += 1
        return original(self, operation, params)

    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")}
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    try:
        with mock_aws(), LocalBroker() as broker:
            s3 = boto3.client("s3", region_name="us-east-1")
            ensure_bucket(s3, S3_BUCKET)
            ensure_ledger_table(boto3.client("dynamodb", region_name="us-east-1"), "bench-ledger")
            key = f"{PARTNER}/{Path(made.path).name}"
            version = s3.upload_file(made.path, S3_BUCKET, key) or s3.head_object(Bucket=S3_BUCKET, Key=key)
            seed_state(s3, catalogue, products, _file_as_of_ms(made.path) - DAY_MS)
            settings = Settings(
                bucket=S3_BUCKET,
                ledger_table="bench-ledger",
                kafka_bootstrap_servers=broker.bootstrap,
                topic=f"bench.requests.{time.time_ns()}",
            )
            ingestor = build_ingestor(settings)
            BaseClient._make_api_call = counting  # type: ignore[method-assign]
            try:
                outcome = ingestor.ingest(ObjectRef(S3_BUCKET, key, version.get("VersionId")), trigger="bench")
            finally:
                BaseClient._make_api_call = original  # type: ignore[method-assign]
            if outcome.status != "published":
                raise RuntimeError(f"the file ended {outcome.status}: {outcome.reason}")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return dict(sorted(counted.items()))


def table(runs: list[dict[str, Any]]) -> str:
    """Median wall, CPU and peak RSS per (catalogue, file), and each against the new partner's."""
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for run in runs:
        if run["ok"]:
            cells.setdefault((run["catalogue"], run["products"]), []).append(run)
    lines = [
        "| partner's catalogue | file | runs | shards | wall s (median) | x new partner | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (catalogue, products), done in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0])):
        wall = statistics.median(r["wall_s"] for r in done)
        new = cells.get((0, products))
        ratio = wall / statistics.median(r["wall_s"] for r in new) if new else None
        lines.append(
            f"| {catalogue:,} keys | {products:,} products | {len(done)} | {done[0]['shards']} | {wall:.2f} | "
            f"{f'{ratio:.2f}x' if ratio else '-'} | {statistics.median(r['cpu_s'] for r in done):.2f} | "
            f"{max(r['rss_mib'] for r in done):.0f} |"
        )
    failed = [run for run in runs if not run["ok"]]
    if failed:
        lines.append(f"\n{len(failed)} run(s) failed and are not counted: see bench/out/state.json")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__.split("\n")[0])
    parser.add_argument("--catalogues", type=int, nargs="+", default=list(CATALOGUES))
    parser.add_argument("--files", type=int, nargs="+", default=list(FILES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--requests", action="store_true", help="also count one file's AWS calls per cell")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = S3Stage()
    runs: list[dict[str, Any]] = []
    try:
        for attempt in range(args.repeat):  # interleaved, so drift on the machine hits every cell alike
            for products in args.files:
                for catalogue in args.catalogues:
                    run = measure_one(stage, catalogue, products, out_dir, args.timeout)
                    run["attempt"] = attempt
                    runs.append(run)
                    print(
                        f"state: {catalogue:>10,} keys, {products:>7,} products: "
                        f"{'ok' if run['ok'] else 'FAILED'} {run['wall_s'] or 0:.2f}s wall, "
                        f"{run['cpu_s'] or 0:.2f}s CPU, {run['rss_mib']:.0f} MiB",
                        flush=True,
                    )
    finally:
        stage.stop()
    requests = {}
    if args.requests:
        for products in args.files:
            for catalogue in args.catalogues:
                requests[f"{catalogue} keys, {products} products"] = count_requests(catalogue, products, out_dir)
    report = table(runs)
    if requests:
        report += "\n\nAWS calls per file:\n" + "\n".join(f"- {cell}: {calls}" for cell, calls in requests.items())
    (out_dir / "state.json").write_text(json.dumps({"runs": runs, "requests": requests}, indent=1) + "\n")
    (out_dir / "state.md").write_text(report + "\n")
    print(report)
    print(f"(written to {out_dir / 'state.md'})")
    return 0 if all(run["ok"] for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
