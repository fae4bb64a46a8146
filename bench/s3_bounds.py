"""How near the S3 path can come to the local rate on this machine (issue 16 asks 0.8x).

The 1,000,000-product file is ingested locally and from S3 (as ``bench.state`` runs it: moto's
server in this process, a new partner, the ledger, the stale guard and key ownership), round after
round, and from S3 again with the S3 path's per-product work switched off inside the ingest
process:

- ``no-hashes``: every event's state hash is 1 and its field hashes 0, so the parsing workers
  serialize it as a local run does (one ``orjson.dumps``) and only build its index row;
- ``no-hashes-no-reports``: that, and the producer asks for no delivery report per event (no key
  positions are kept).

Those two runs publish the same events but leave an index no later file could trust: they measure
a bound, they are not a mode of the product. If the ratio stays under the target with that work
costing nothing, no speed-up of it can reach the target here; what remains is the state requests,
moto's server on the same cores, and the ownership, guard and write-back stages.

    python -m bench.s3_bounds --rounds 5            # about two minutes a round on the 2-core machine
    python -m bench.s3_bounds --rounds 3 --stages   # and each stage's wall and CPU (bench.stage_times)

With ``--stages`` the local run goes through the same launcher as the S3 runs, so that it can be
timed stage by stage too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import stage_times
from bench.memory import OUT, drop_file, dropgate_command, run_measured
from bench.run import _SUMMARY, PARTITIONS, PARTNER, S3Stage, _child_env

PRODUCTS = 1_000_000
#: What each S3 variant switches off, in the order a round runs them.
VARIANTS: dict[str, tuple[str, ...]] = {
    "s3": (),
    "no-hashes": ("hashes",),
    "no-hashes-no-reports": ("hashes", "reports"),
}


def _without_hashes() -> None:
    from dropgate import events

    split = events.FileSerializer._split

    def _split(self: events.FileSerializer, *args: Any) -> events.SplitValue:
        hashes, self.state_hashes = self.state_hashes, False
        try:
            value = split(self, *args)
        finally:
            self.state_hashes = hashes
        if hashes:
            value.state, value.fields = 1, (0,) * 6
        return value

    events.FileSerializer._split = _split  # type: ignore[method-assign]


def _without_reports() -> None:
    from dropgate.adapters import kafka_publisher

    publish = kafka_publisher.KafkaPublisher.publish

    def _publish(self: kafka_publisher.KafkaPublisher, messages: Any, **options: Any) -> Any:
        return publish(self, messages, **{**options, "positions": None})

    kafka_publisher.KafkaPublisher.publish = _publish  # type: ignore[method-assign]


def child(switched_off: list[str], argv: list[str], *, stages: bool = False) -> None:
    """The ingest process of a variant: patched (workers are forked, so they get it too), then the CLI."""
    if stages:
        from bench import stage_times

        stage_times.install()
    if "hashes" in switched_off:
        _without_hashes()
    if "reports" in switched_off:
        _without_reports()
    from dropgate.cli import main

    sys.argv = ["dropgate", *argv]
    main()


def _launcher(switched_off: tuple[str, ...], stages: bool) -> list[str]:
    """This module's ``--child``, which patches the ingest process before it runs the CLI."""
    flags = ["--stages"] if stages else []
    return [sys.executable, "-m", "bench.s3_bounds", "--child", ",".join(switched_off), *flags]


def _run(stage: S3Stage, variant: str | None, made: Any, out_dir: Path, stages: bool) -> dict[str, Any]:
    from devstack.broker import LocalBroker

    with LocalBroker() as broker:
        env = _child_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "DROPGATE_TOPIC": f"bench.bounds.{variant or 'local'}.{time.time_ns()}",
                "DROPGATE_TOPIC_PARTITIONS": str(PARTITIONS),
            }
        )
        if variant is None:
            ingest = ["ingest", str(made.path), "--partner", PARTNER]
            argv = [*_launcher((), stages), "--", *ingest] if stages else [*dropgate_command(), *ingest]
        else:
            aws_env, uri = stage.prepare(made)
            env.update(aws_env)
            argv = [*_launcher(VARIANTS[variant], stages), "--", "ingest", uri]
        log = out_dir / "logs" / f"bounds-{variant or 'local'}-{time.strftime('%Y%m%dT%H%M%S')}"
        log.parent.mkdir(parents=True, exist_ok=True)
        run = run_measured(argv, env, 600, log)
    match = _SUMMARY.search(run.stdout)
    ok = (
        run.returncode == 0
        and match is not None
        and match["status"] == "published"
        and int(match["events"]) == made.products
    )
    if not ok:
        raise SystemExit(f"{variant or 'local'}: the ingest failed (see {log}.stderr):\n{run.stderr[-2000:]}")
    return {"wall_s": run.seconds, "cpu_s": run.cpu_seconds, "stages": stage_times.parse(run.stderr)}


def measure(rounds: int, products: int, out_dir: Path, *, stages: bool = False) -> dict[str, list[dict[str, Any]]]:
    made = drop_file(products, "plain", 42, out_dir)
    stage = S3Stage()
    runs: dict[str, list[dict[str, Any]]] = {"local": [], **{variant: [] for variant in VARIANTS}}
    try:
        for round_ in range(rounds):
            for variant in (None, *VARIANTS):
                run = _run(stage, variant, made, out_dir, stages)
                runs[variant or "local"].append(run)
                print(
                    f"round {round_ + 1}: {variant or 'local':22s} {run['wall_s']:6.2f} s, {run['cpu_s']:5.1f} CPU s",
                    flush=True,
                )
    finally:
        stage.stop()
    return runs


def report(runs: dict[str, list[dict[str, Any]]], load_before: float) -> None:
    local = [run["wall_s"] for run in runs["local"]]
    print(f"\nmedians of {len(local)} rounds, {os.cpu_count()} CPUs, load average before: {load_before:.2f}")
    for name, rows in runs.items():
        walls = [run["wall_s"] for run in rows]
        pairs = ", ".join(f"{lo / wall:.2f}" for lo, wall in zip(local, walls, strict=True))
        cpu = statistics.median(run["cpu_s"] for run in rows)
        print(
            f"{name:22s} wall {statistics.median(walls):6.2f} s  CPU {cpu:5.1f} s"
            f"  x the local rate {statistics.median(local) / statistics.median(walls):.3f} (round by round: {pairs})"
        )


def report_stages(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Each stage's median wall, CPU of the ingest process and CPU of its parsing workers, per run."""
    print("\nstage by stage (medians; wall s / ingest-process CPU s / parsing workers' CPU s)")
    print(f"{'stage':38s}" + "".join(f"{name:>26s}" for name in runs))
    for name, _module, _path in stage_times.STAGES:
        cells = []
        for rows in runs.values():
            timed = [s for row in rows if row["stages"] for s in row["stages"]["stages"] if s["stage"] == name]
            if not timed:
                cells.append(f"{'-':>26s}")
                continue
            wall, cpu, workers = (statistics.median(s[k] for s in timed) for k in ("wall_s", "cpu_s", "workers_cpu_s"))
            cells.append(f"{wall:8.2f} / {cpu:6.2f} / {workers:6.2f}")
        print(f"{name:38s}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--products", type=int, default=PRODUCTS)
    parser.add_argument("--stages", action="store_true", help="time each stage inside the ingest process too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        child([part for part in args.child.split(",") if part], rest, stages=args.stages)
        return
    load_before = os.getloadavg()[0]  # the machine's state before this run's own load
    runs = measure(args.rounds, args.products, OUT, stages=args.stages)
    report(runs, load_before)
    if args.stages:
        report_stages(runs)


if __name__ == "__main__":
    main()
