"""Time and peak memory of ``dropgate ingest`` on large generated drops, verified on the topic.

    python -m bench.memory [--products 100000 1000000] [--formats plain gzip] [--timeout 1800]

For each size and format: generate the file into ``bench/out/`` (reused when an identical one is
already there), start a fresh local broker (tansu), run ``dropgate ingest FILE --partner acme`` as
a child process against it with a unique topic, then read the topic back and check it holds one
event per product with one distinct key per product (tombstones are events). Prints a table and
writes ``bench/out/results.json``; exits 1 if any run failed or did not verify.

Peak RSS is the larger of two readings of the ingest process (only that pid, not the broker):
``ru_maxrss`` as returned by ``wait4()`` to a small wrapper process that starts it (what
``/usr/bin/time -v`` prints as "Maximum resident set size"; see ``_WRAPPER`` for why not measure
it as our own child), and the largest of samples of its RSS (psutil) and of its ``VmHWM``
(``/proc``) taken every 50 ms. They agree to within about 1 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
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
        f"generated {os.path.relpath(path, REPO)}: {made.products:,} products ({made.deleted:,} deleted), "
        f"{made.bytes / MIB:.1f} MiB in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    return made


# -- measuring the child --------------------------------------------------------------------------
class RssPoller(threading.Thread):
    """Samples one process's RSS (psutil) every ``interval`` seconds into a timeline.

    On Linux each sample also reads the kernel's high-water mark (``VmHWM`` in
    ``/proc/PID/status``, the counter behind ``ru_maxrss``), so the timeline shows *when* the peak
    happened even if the peak itself fell between two samples.
    """

    def __init__(self, pid: int, interval: float = POLL_SECONDS) -> None:
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self._process = psutil.Process(pid)
        self._status = Path(f"/proc/{pid}/status")
        self._interval = interval
        self._halt = threading.Event()
        self.started = time.perf_counter()
        self.timeline: list[tuple[float, int, int | None]] = []  # (seconds, rss bytes, hwm bytes)
        #: Largest sum of PSS over the process and its descendants (parsing workers): what the
        #: process tree really holds, shared pages counted once in all.
        self.tree_pss_peak = 0

    def _hwm(self) -> int | None:
        try:
            for line in self._status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def run(self) -> None:
        psutil = self._psutil
        while not self._halt.is_set():
            try:
                if not self._process.is_running():  # exited (and its pid possibly reused)
                    return
                rss = self._process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                return
            self.timeline.append((time.perf_counter() - self.started, rss, self._hwm()))
            self.tree_pss_peak = max(self.tree_pss_peak, self._tree_pss())
            self._halt.wait(self._interval)

    def _tree_pss(self) -> int:
        try:
            pids = [self._process.pid, *(child.pid for child in self._process.children(recursive=True))]
        except self._psutil.Error:
            return 0
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            except (OSError, ValueError, IndexError):
                continue
        return total

    def stop(self) -> None:
        self._halt.set()
        self.join()

    @property
    def peak(self) -> int:
        """The largest RSS sample or high-water mark seen (the mark also covers peaks between samples)."""
        return max((max(rss, hwm or 0) for _, rss, hwm in self.timeline), default=0)

    @property
    def peak_seconds(self) -> float | None:
        """When the kernel's high-water mark first reached its final value (else the largest sample)."""
        hwm_final = max((h for _, _, h in self.timeline if h is not None), default=None)
        if hwm_final is not None:
            return next(t for t, _, h in self.timeline if h == hwm_final)
        peak = self.peak
        return next((t for t, rss, _ in self.timeline if rss == peak), None)

    def write_csv(self, path: Path) -> None:
        with path.open("w") as out:
            out.write("seconds,rss_bytes,hwm_bytes\n")
            for t, rss, hwm in self.timeline:
                out.write(f"{t:.3f},{rss},{'' if hwm is None else hwm}\n")


@dataclass
class ChildRun:
    returncode: int | None
    seconds: float | None
    maxrss_bytes: int | None  # kernel high-water mark of the ingest process (wait4 ru_maxrss)
    polled_bytes: int  # largest sampled RSS / VmHWM
    samples: int
    peak_seconds: float | None  # when the peak happened, seconds after start
    stdout: str
    stderr: str
    timed_out: bool
    #: user + system CPU seconds of the child (and anything it reaped), from the wrapper's wait4()
    cpu_seconds: float | None = None
    #: largest sampled sum of PSS over the child and its descendants
    tree_pss_bytes: int | None = None


#: Runs argv[2:] as its child and writes the child's exit code, wall time and rusage to argv[1],
#: like ``/usr/bin/time -v`` does. Why not measure the child directly: Linux carries the
#: high-water mark of the address space a process had *before* exec() into its ru_maxrss, and
#: subprocess starts children with vfork(), so a child of the benchmark process (which holds a
#: million keys while verifying) would report the benchmark's own peak. This wrapper is a fresh,
#: small interpreter (about 10 MiB), far below what the ingest itself uses, so its child's
#: ru_maxrss is the ingest's own.
_WRAPPER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    json.dump({"pid": child.pid, "returncode": code, "seconds": seconds, "maxrss_kib": usage.ru_maxrss,
               "utime": usage.ru_utime, "stime": usage.ru_stime}, out)
sys.exit(code if code >= 0 else 128 - code)
"""


def _child_of(parent: int, timeout: float = 10.0) -> int | None:
    """The pid of the (single) child the wrapper started, once it exists."""
    import psutil

    deadline = time.monotonic() + timeout
    try:
        wrapper = psutil.Process(parent)
        while time.monotonic() < deadline:
            children = wrapper.children()
            if children:
                return int(children[0].pid)
            if wrapper.status() == psutil.STATUS_ZOMBIE:
                return None
            time.sleep(0.002)
    except psutil.NoSuchProcess:
        pass
    return None


def run_measured(argv: list[str], env: dict[str, str], timeout: float, log_prefix: Path) -> ChildRun:
    """Run ``argv`` under the wrapper and measure it: wall time, kernel peak RSS, polled peak RSS."""
    out_path = log_prefix.with_name(log_prefix.name + ".stdout")
    err_path = log_prefix.with_name(log_prefix.name + ".stderr")
    report_path = log_prefix.with_name(log_prefix.name + ".rusage.json")
    report_path.unlink(missing_ok=True)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        wrapper = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, str(report_path), *argv],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a timeout kills the ingest too
        )
        target = _child_of(wrapper.pid)
        poller = RssPoller(target) if target is not None else None
        if poller is not None:
            poller.start()
        timed_out = False
        try:
            wrapper.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(wrapper.pid, signal.SIGKILL)
            wrapper.wait()
        finally:
            if poller is not None:
                poller.stop()
                poller.write_csv(log_prefix.with_name(log_prefix.name + ".rss.csv"))
    report: dict[str, Any] = {}
    if report_path.is_file():
        report = json.loads(report_path.read_text())
    return ChildRun(
        returncode=report.get("returncode", wrapper.returncode),
        seconds=report.get("seconds"),
        maxrss_bytes=report["maxrss_kib"] * 1024 if "maxrss_kib" in report else None,  # Linux: KiB
        polled_bytes=poller.peak if poller is not None else 0,
        samples=len(poller.timeline) if poller is not None else 0,
        peak_seconds=poller.peak_seconds if poller is not None else None,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        timed_out=timed_out,
        cpu_seconds=report["utime"] + report["stime"] if "utime" in report else None,
        tree_pss_bytes=poller.tree_pss_peak if poller is not None else None,
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
    peak_seconds: float | None = None
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


def measure(made: Generated, fmt: str, *, timeout: float, out_dir: Path = OUT) -> Result:
    from devstack.broker import LocalBroker

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
    log_prefix = out_dir / "logs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{path.name}"
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
        result.peak_seconds = run.peak_seconds
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
        "peak at s",
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
                _fmt(r.peak_seconds, ".1f"),
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


def report(result: Result) -> None:
    status = "verified" if result.verified else "FAILED"
    print(
        f"{status}: {result.file} seconds={_fmt(result.seconds, '.1f')} "
        f"peak_rss_mib={_fmt((result.peak_bytes or 0) / MIB, '.1f')} "
        f"(reached at {_fmt(result.peak_seconds, '.1f')}s) | {result.summary}",
        flush=True,
    )
    for problem in result.problems:
        print(f"  problem: {problem}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="N")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="kill an ingest after this many seconds (default 1800)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="K", help="measure each file K times (to see run-to-run variation)"
    )
    parser.add_argument("--out-dir", type=Path, default=OUT, help="where files, logs and results go")
    args = parser.parse_args(argv)

    out_dir: Path = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    for products in args.products:
        for fmt in args.formats:
            made = drop_file(products, fmt, args.seed, out_dir)
            for attempt in range(1, args.repeat + 1):
                result = measure(made, fmt, timeout=args.timeout, out_dir=out_dir)
                if args.repeat > 1:
                    result.file += f" #{attempt}"
                results.append(result)
                report(result)
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
        "peak RSS = max(wait4, polled), of the ingest process only. wait4: its ru_maxrss as reaped by a "
        "small wrapper (what /usr/bin/time -v reports); polled: largest RSS or VmHWM sample, every "
        f"{POLL_SECONDS * 1000:.0f} ms; peak at: seconds after start when the high-water mark was reached. "
        "MiB = 2^20 bytes; MiB/s is file bytes as stored (gzip: compressed)."
    )
    failed = [r for r in results if not r.verified]
    if failed:
        print(f"{len(failed)} run(s) failed verification: " + ", ".join(r.file for r in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
