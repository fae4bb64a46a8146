"""Time and peak memory of ``dropgate ingest`` on large generated drops, verified on the topic.

    python -m bench.memory [--products 100000 1000000] [--formats plain gzip] [--timeout 1800]

For each size and format: generate the file into ``bench/out/`` (reused when an identical one is
already there), start a fresh local broker (tansu), run ``dropgate ingest FILE --partner acme`` as
a child process against it with a unique topic, then read the topic back and check it holds one
event per product with one distinct key per product (tombstones are events). Prints a table and
writes ``bench/out/results.json``; exits 1 if any run failed or did not verify.

Peak RSS is the larger of two readings of the ingest process (only that pid, not the broker):
its high-water mark as the kernel keeps it (``ru_maxrss`` from ``wait4()`` on that pid, the number
``/usr/bin/time -v`` prints as "Maximum resident set size"), and the largest of psutil samples of
its RSS taken every 50 ms. Both can only under-read: the poll misses peaks shorter than the
interval, and the kernel's counter lags by the few hundred KiB it batches per thread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.generate import GENERATOR_VERSION, Generated, generate

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
MIB = 1024 * 1024
POLL_SECONDS = 0.05
DEFAULT_SIZES = (100_000, 1_000_000)
FORMATS = ("plain", "gzip")


# -- input files ----------------------------------------------------------------------------------
def drop_file(products: int, fmt: str, seed: int, out_dir: Path) -> Generated:
    """The generated file for (products, format, seed), reusing an identical one from an earlier run.

    A sidecar ``<file>.json`` records what was generated; the file is reused only when the sidecar
    matches (products, seed, generator version) and the size on disk is the size that was written.
    """
    gz = fmt == "gzip"
    suffix = "" if seed == 42 else f"-seed{seed}"
    path = out_dir / f"generic-{products}{suffix}.xml{'.gz' if gz else ''}"
    meta_path = path.with_name(path.name + ".json")
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            cached = Generated(**meta)
        except (ValueError, TypeError):
            cached = None
        if (
            cached is not None
            and cached.products == products
            and cached.seed == seed
            and cached.gzip == gz
            and cached.version == GENERATOR_VERSION
            and cached.bytes == path.stat().st_size
        ):
            return cached
    started = time.perf_counter()
    made = generate(path, products, gzip=gz, seed=seed)
    meta_path.write_text(json.dumps(asdict(made)) + "\n")
    print(
        f"generated {path.relative_to(REPO)}: {made.products:,} products ({made.deleted:,} deleted), "
        f"{made.bytes / MIB:.1f} MiB in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    return made


# -- measuring the child --------------------------------------------------------------------------
class RssPoller(threading.Thread):
    """Samples one process's RSS every ``interval`` seconds; ``peak`` is the largest sample."""

    def __init__(self, pid: int, interval: float = POLL_SECONDS) -> None:
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self._process = psutil.Process(pid)
        self._interval = interval
        self._halt = threading.Event()
        self.peak = 0
        self.samples = 0

    def run(self) -> None:
        psutil = self._psutil
        while not self._halt.is_set():
            try:
                rss = self._process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                return
            self.samples += 1
            self.peak = max(self.peak, rss)
            self._halt.wait(self._interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class ChildRun:
    returncode: int
    seconds: float
    maxrss_bytes: int  # kernel high-water mark (wait4 ru_maxrss)
    polled_bytes: int  # largest psutil sample
    samples: int
    stdout: str
    stderr: str
    timed_out: bool


def run_measured(argv: list[str], env: dict[str, str], timeout: float, log_prefix: Path) -> ChildRun:
    """Run ``argv`` and measure it: wall time, kernel peak RSS, polled peak RSS.

    The child is waited for with ``waitid(WNOWAIT)`` first (it has exited but is not reaped, so
    its pid cannot be reused while the poller stops), then reaped with ``wait4()`` for its rusage.
    """
    out_path = log_prefix.with_suffix(".stdout")
    err_path = log_prefix.with_suffix(".stderr")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        poller = RssPoller(child.pid)
        poller.start()
        timed_out = False
        deadline = started + timeout
        try:
            while True:
                info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
                if info is not None:
                    break
                if time.perf_counter() > deadline:
                    timed_out = True
                    child.kill()
                    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
                    break
                time.sleep(0.01)
            seconds = time.perf_counter() - started
        finally:
            poller.stop()
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(
        returncode=child.returncode,
        seconds=seconds,
        maxrss_bytes=usage.ru_maxrss * 1024,  # Linux reports KiB
        polled_bytes=poller.peak,
        samples=poller.samples,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        timed_out=timed_out,
    )


# -- verifying the topic --------------------------------------------------------------------------
@dataclass
class TopicCount:
    events: int = 0
    tombstones: int = 0
    null_keys: int = 0
    distinct_keys: int = 0
    partitions: int = 0
    seconds: float = 0.0


def count_topic(bootstrap: str, topic: str, *, timeout: float = 600.0) -> TopicCount:
    """Count every message of ``topic`` from offset 0 to the end of each partition (no group join).

    Keeps a set of key bytes (about 100 bytes per key in this process, which is not measured).
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    started = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-count-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log.connection.close": False,
            "fetch.max.bytes": 64 * MIB,
            "max.partition.fetch.bytes": 16 * MIB,
        }
    )
    result = TopicCount()
    keys: set[bytes] = set()
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise KafkaException(metadata.error if metadata else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        partitions = sorted(metadata.partitions)
        result.partitions = len(partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading '{topic}' did not reach the end of every partition in {timeout}s")
            for message in consumer.consume(10_000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(message.partition() or 0)
                        continue
                    raise KafkaException(error)
                result.events += 1
                key = message.key()
                if key is None:
                    result.null_keys += 1
                else:
                    keys.add(key)
                if message.value() is None:
                    result.tombstones += 1
    finally:
        consumer.close()
    result.distinct_keys = len(keys)
    result.seconds = time.perf_counter() - started
    return result


# -- one measurement ------------------------------------------------------------------------------
_SUMMARY = re.compile(r"^(?P<status>\w+): .*? events=(?P<events>\d+)(?: tombstones=(?P<tomb>\d+))?", re.M)
_CLI_SECONDS = re.compile(r" seconds=(?P<seconds>[0-9.]+)")


@dataclass
class Result:
    file: str
    format: str
    products: int
    deleted: int
    size_bytes: int
    xml_bytes: int
    returncode: int | None = None
    seconds: float | None = None
    cli_seconds: float | None = None
    peak_rss_bytes: int | None = None
    polled_rss_bytes: int | None = None
    rss_samples: int = 0
    summary: str = ""
    topic: str = ""
    topic_count: dict[str, Any] | None = None
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int | None:
        """The larger of the two readings: each can only under-read the true peak."""
        readings = [b for b in (self.peak_rss_bytes, self.polled_rss_bytes) if b is not None]
        return max(readings) if readings else None

    @property
    def records_per_s(self) -> float | None:
        return self.products / self.seconds if self.seconds else None

    @property
    def mib_per_s(self) -> float | None:
        return self.size_bytes / MIB / self.seconds if self.seconds else None


def dropgate_command() -> list[str]:
    """The ``dropgate`` console script of this interpreter's environment (the venv)."""
    beside = Path(sys.executable).parent / "dropgate"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dropgate")
    if found:
        return [found]
    return [sys.executable, "-m", "dropgate.cli"]


def measure(made: Generated, fmt: str, *, timeout: float) -> Result:
    from dropgate.local.broker import LocalBroker

    path = Path(made.path)
    rel = os.path.relpath(path, REPO)
    result = Result(
        file=rel,
        format=fmt,
        products=made.products,
        deleted=made.deleted,
        size_bytes=made.bytes,
        xml_bytes=made.xml_bytes,
    )
    result.topic = f"bench.{path.name.replace('.', '-')}.{uuid.uuid4().hex[:8]}"
    log_prefix = OUT / "logs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{path.name}"
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    with LocalBroker() as broker:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "DROPGATE_TOPIC": result.topic,
        }
        argv = [*dropgate_command(), "ingest", f"./{rel}", "--partner", "acme"]
        print(f"running: KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap} DROPGATE_TOPIC={result.topic} "
              f"{' '.join(argv)}", flush=True)  # fmt: skip
        run = run_measured(argv, env, timeout, log_prefix)
        result.returncode = run.returncode
        result.seconds = run.seconds
        result.peak_rss_bytes = run.maxrss_bytes
        result.polled_rss_bytes = run.polled_bytes
        result.rss_samples = run.samples
        result.summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        if run.timed_out:
            result.problems.append(f"ingest killed after the {timeout:.0f}s timeout")
        if run.returncode != 0:
            tail = "\n".join(run.stderr.strip().splitlines()[-20:])
            result.problems.append(f"ingest exited {run.returncode}; stderr tail:\n{tail}")
        match = _SUMMARY.search(run.stdout)
        if match is None:
            result.problems.append(f"no summary line in ingest output: {run.stdout.strip()[-500:]!r}")
        else:
            if match["status"] != "published":
                result.problems.append(f"ingest status {match['status']!r}, expected 'published'")
            if int(match["events"]) != made.expected_events:
                result.problems.append(f"ingest says events={match['events']}, expected {made.expected_events}")
            if int(match["tomb"] or 0) != made.deleted:
                result.problems.append(f"ingest says tombstones={match['tomb'] or 0}, expected {made.deleted}")
        seconds = _CLI_SECONDS.search(run.stdout)
        if seconds:
            result.cli_seconds = float(seconds["seconds"])
        if run.returncode == 0 and not run.timed_out:
            try:
                count = count_topic(broker.bootstrap, result.topic)
            except Exception as error:
                result.problems.append(f"reading the topic back failed: {error}")
            else:
                result.topic_count = asdict(count)
                if count.events != made.expected_events:
                    result.problems.append(f"topic holds {count.events} events, expected {made.expected_events}")
                if count.distinct_keys != made.expected_keys:
                    result.problems.append(
                        f"topic holds {count.distinct_keys} distinct keys, expected {made.expected_keys}"
                    )
                if count.tombstones != made.deleted:
                    result.problems.append(f"topic holds {count.tombstones} tombstones, expected {made.deleted}")
                if count.null_keys:
                    result.problems.append(f"topic holds {count.null_keys} events without a key")
        if not broker.running:
            result.problems.append("the broker exited during the run:\n" + broker.output()[-2000:])
    result.verified = not result.problems
    return result


# -- report ---------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[Result]) -> str:
    header = (
        "file",
        "products",
        "size MiB",
        "seconds",
        "records/s",
        "MiB/s",
        "peak RSS MiB",
        "wait4 MiB",
        "polled MiB",
        "verified",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.file,
                f"{r.products:,}",
                f"{r.size_bytes / MIB:.1f}",
                _fmt(r.seconds, ".1f"),
                _fmt(r.records_per_s, ",.0f"),
                _fmt(r.mib_per_s, ".2f"),
                _fmt(r.peak_bytes / MIB if r.peak_bytes is not None else None, ".1f"),
                _fmt(r.peak_rss_bytes / MIB if r.peak_rss_bytes is not None else None, ".1f"),
                _fmt(r.polled_rss_bytes / MIB if r.polled_rss_bytes is not None else None, ".1f"),
                "yes" if r.verified else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="N")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="kill an ingest after this many seconds (default 1800)"
    )
    parser.add_argument("--out-dir", type=Path, default=OUT, help="where files, logs and results go")
    args = parser.parse_args(argv)

    out_dir: Path = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    for products in args.products:
        for fmt in args.formats:
            made = drop_file(products, fmt, args.seed, out_dir)
            result = measure(made, fmt, timeout=args.timeout)
            results.append(result)
            status = "verified" if result.verified else "FAILED"
            print(
                f"{status}: {result.file} seconds={_fmt(result.seconds, '.1f')} "
                f"peak_rss_mib={_fmt((result.peak_bytes or 0) / MIB, '.1f')} | {result.summary}",
                flush=True,
            )
            for problem in result.problems:
                print(f"  problem: {problem}", flush=True)
    (out_dir / "results.json").write_text(
        json.dumps(
            [
                {
                    **asdict(r),
                    "peak_bytes": r.peak_bytes,
                    "records_per_s": r.records_per_s,
                    "mib_per_s": r.mib_per_s,
                }
                for r in results
            ],
            indent=2,
        )
        + "\n"
    )
    print()
    print(table(results))
    print()
    print(
        "peak RSS = max(wait4, polled). wait4: the ingest process's kernel high-water mark (ru_maxrss, "
        "what /usr/bin/time -v reports); polled: largest psutil RSS sample, every "
        f"{POLL_SECONDS * 1000:.0f} ms. MiB = 2^20 bytes; MiB/s is file bytes as stored (gzip: compressed)."
    )
    failed = [r for r in results if not r.verified]
    if failed:
        print(f"{len(failed)} run(s) failed verification: " + ", ".join(r.file for r in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
