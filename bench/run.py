"""The performance benchmark: dropgate against floors and peers, verified on the topic, in a time budget.

    python -m bench.run                       # what `make bench` runs: 100k and 1M products, plain and gzip
    python -m bench.run --quick               # 100k only, each contestant once (about 2 minutes)
    python -m bench.run --sizes 100000 --repeat 3 --contestants product-local floor-combined

Contestants, each in its own fresh process (see ``bench/README.md``):

- ``product-local``: ``dropgate ingest ./FILE --partner acme`` (the CLI creates the topic);
- ``product-s3``: ``dropgate ingest s3://BUCKET/acme/FILE`` through moto's server, ledger and
  stale-overwrite guard on, ``DROPGATE_CHANGED_ONLY=true`` (moto runs in *this* process, so the
  child's RSS and CPU exclude it);
- ``floor-parse``, ``floor-produce``, ``floor-combined``: ``bench.contestants.floor_*``;
- ``peer-pandas``, ``peer-xmltodict``: ``bench.contestants.peer_*``.

Every measurement gets a fresh broker (tansu, in-memory) and a fresh topic (compacted, 3
partitions), and counts only if its output verifies: the process exited 0, its own summary says it
did all the work, and the topic read back holds one message per product (tombstones included),
one distinct key per product and the expected tombstones. Failed runs are reported, never timed.

Runs are interleaved (round 1 measures every cell once, rounds 2 and 3 repeat them in priority
order), so slow drift on the machine hits every contestant alike, and a time budget decides what
fits: a repeat is skipped, and said so in the report, when its estimated duration (from the same
cell's earlier runs, or the other size scaled) would overrun ``--budget-minutes`` counted from
``--started`` (the Makefile passes the time `make bench` started, so the venv install counts).

Writes ``bench/out/run.json`` (every run) and ``bench/out/report.md`` (the tables, ratios and
targets that ``bench/results.md`` is written from), and prints the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.generate import Generated
from bench.memory import OUT, REPO, count_topic, drop_file, dropgate_command, run_measured

PARTNER = "acme"
S3_BUCKET = "bench-drops"
S3_LEDGER = "bench-ledger"
PARTITIONS = 3

CONTESTANTS = (
    "product-local",
    "product-baseline",
    "product-s3",
    "floor-parse",
    "floor-produce",
    "floor-combined",
    "peer-pandas",
    "peer-xmltodict",
)
_MODULES = {
    "floor-parse": "bench.contestants.floor_parse",
    "floor-produce": "bench.contestants.floor_produce",
    "floor-combined": "bench.contestants.floor_combined",
    "peer-pandas": "bench.contestants.peer_pandas",
    "peer-xmltodict": "bench.contestants.peer_xmltodict",
}


# -- the plan -------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One (contestant, size, format) to measure ``want`` times; ``rank`` orders the repeats."""

    contestant: str
    products: int
    fmt: str
    want: int
    rank: int
    #: repeats beyond ``want``, measured only after every cell had its ``want`` and only if they fit
    bonus: int = 0
    runs: list[Run] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    bonus_skipped: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.contestant} {self.products:,} {self.fmt}"


def build_plan(sizes: list[int], repeat: int, large_peer_repeat: int, contestants: list[str]) -> list[Cell]:
    """Every cell with how often to measure it and its priority for repeats (lower rank first).

    What `make bench` keeps when time is short, in this order: product-local on all four files,
    floors and product-s3 on the large plain file, peers on the small file; then the rest. Peers
    hold the whole document in memory and are slow, so on the largest size they run
    ``large_peer_repeat`` times (default once), and up to ``repeat`` times only if time is left
    after everything else (bonus runs). Floors and peers run on plain files only.
    """
    largest = max(sizes)
    cells: list[Cell] = []

    def add(contestant: str, products: int, fmt: str, want: int, rank: int) -> None:
        if contestant in contestants and want > 0:
            bonus = max(0, repeat - want) if contestant.startswith("peer") else 0
            cells.append(Cell(contestant, products, fmt, want, rank, bonus=bonus))

    for products in sorted(sizes):
        big = products == largest and len(sizes) > 1
        for product in ("product-local", "product-baseline"):  # the baseline beside the product, run by run
            add(product, products, "plain", repeat, 0 if big else 2)
            add(product, products, "gzip", repeat, 1 if big else 3)
        add("floor-combined", products, "plain", repeat, 4 if big else 9)
        add("product-s3", products, "plain", repeat if big else 1, 5 if big else 12)
        add("floor-parse", products, "plain", repeat, 6 if big else 10)
        add("floor-produce", products, "plain", repeat, 7 if big else 11)
        add("peer-pandas", products, "plain", large_peer_repeat if big else repeat, 13 if big else 8)
        add("peer-xmltodict", products, "plain", large_peer_repeat if big else repeat, 13 if big else 8)
    return cells


def schedule(cells: list[Cell]) -> Iterator[tuple[int, Cell]]:
    """Round 1: every cell once, smallest size first (cheap runs first give estimates for the big
    ones). Later rounds: the cells still wanting a repeat, by rank."""
    for cell in sorted(cells, key=lambda c: (c.products, c.rank)):
        yield 1, cell
    rounds = max((c.want for c in cells), default=0)
    for round_ in range(2, rounds + 1):
        for cell in sorted(cells, key=lambda c: (c.rank, c.products)):
            if cell.want >= round_:
                yield round_, cell
    extra = max((c.want + c.bonus for c in cells), default=0)
    for round_ in range(2, extra + 1):
        for cell in sorted(cells, key=lambda c: (c.rank, c.products)):
            if cell.want < round_ <= cell.want + cell.bonus:
                yield round_, cell


# -- one measurement ------------------------------------------------------------------------------
@dataclass
class Run:
    contestant: str
    products: int
    fmt: str
    attempt: int
    file: str
    size_bytes: int
    xml_bytes: int
    deleted: int
    topic: str = ""
    returncode: int | None = None
    wall_seconds: float | None = None  # spawn to exit of the contestant's process (the wrapper's clock)
    timed_seconds: float | None = None  # what the rates use: wall, less the produce floor's value building
    cpu_seconds: float | None = None  # user + system of the contestant's process (wait4)
    maxrss_bytes: int | None = None  # ru_maxrss from wait4 (the kernel's high-water mark)
    polled_bytes: int | None = None  # largest VmHWM / RSS sample
    tree_pss_bytes: int | None = None  # largest sum of PSS over the process and its workers
    peak_seconds: float | None = None
    summary: Any = None  # the contestant's own summary (product: its summary line; others: the JSON line)
    topic_count: dict[str, Any] | None = None
    #: CPU seconds the whole machine was busy (all cores, /proc/stat) while the contestant ran:
    #: the contestant, the broker, this harness (and moto), and anything else running on the box
    machine_busy_seconds: float | None = None
    setup_seconds: float = 0.0  # broker, topic, upload: not timed
    verify_seconds: float = 0.0
    total_seconds: float = 0.0  # everything this measurement cost the budget
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    started_at: str = ""

    @property
    def peak_bytes(self) -> int | None:
        readings = [b for b in (self.maxrss_bytes, self.polled_bytes) if b]
        return max(readings) if readings else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_bytes": self.peak_bytes}


_SUMMARY = re.compile(r"^(?P<status>\w+): .*? events=(?P<events>\d+)(?: tombstones=(?P<tomb>\d+))?", re.M)


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    """What the product's CLI does for itself, done for the floors and peers outside their clock."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log.connection.close": False, "log_level": 4})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config={"cleanup.policy": "compact"})
    admin.create_topics([new], operation_timeout=30, request_timeout=30)[topic].result()


class S3Stage:
    """moto's server (in this process) with the drop bucket and the ledger table, reset per run."""

    def __init__(self) -> None:
        from devstack.aws import LocalAws

        self.aws = LocalAws().start()

    def prepare(self, made: Generated) -> tuple[dict[str, str], str]:
        """Fresh bucket, ledger table and key index; the file uploaded. Returns (env, s3 uri)."""
        import boto3

        from dropgate.provision import ensure_bucket, ensure_ledger_table

        self.aws.reset()  # forget the previous run's object versions, ledger rows and key index
        env = self.aws.environment()
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env["AWS_SESSION_TOKEN"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        s3 = session.client("s3", endpoint_url=self.aws.endpoint)
        ensure_bucket(s3, S3_BUCKET)
        ensure_ledger_table(session.client("dynamodb", endpoint_url=self.aws.endpoint), S3_LEDGER)
        key = f"{PARTNER}/{Path(made.path).name}"
        s3.upload_file(made.path, S3_BUCKET, key)
        env.update(
            {
                "DROPGATE_BUCKET": S3_BUCKET,
                "DROPGATE_LEDGER_TABLE": S3_LEDGER,
                "DROPGATE_CHANGED_ONLY": "true",
            }
        )
        return env, f"s3://{S3_BUCKET}/{key}"

    def stop(self) -> None:
        self.aws.stop()


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DROPGATE_", "AWS_", "KAFKA_")) or k == "DROPGATE_SPOOL_DIR"
    }
    env.update(extra)
    return env


def baseline_command(checkout: Path) -> list[str]:
    """The ``dropgate`` of another checkout (``--baseline``): its own venv, its own code."""
    script = checkout / ".venv" / "bin" / "dropgate"
    if not script.exists():
        raise SystemExit(f"--baseline {checkout}: no {script}; run `make .venv/.installed` in that checkout first")
    return [str(script)]


def measure(
    cell: Cell,
    made: Generated,
    attempt: int,
    *,
    timeout: float,
    out_dir: Path,
    s3: S3Stage | None,
    baseline: Path | None = None,
) -> Run:
    from devstack.broker import LocalBroker

    began = time.perf_counter()
    rel = os.path.relpath(made.path, REPO)
    run = Run(
        contestant=cell.contestant,
        products=made.products,
        fmt=cell.fmt,
        attempt=attempt,
        file=rel,
        size_bytes=made.bytes,
        xml_bytes=made.xml_bytes,
        deleted=made.deleted,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    run.topic = f"bench.{cell.contestant}.{made.products}.{cell.fmt}.{uuid.uuid4().hex[:8]}"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    log_prefix = out_dir / "logs" / f"{stamp}-{cell.contestant}-{Path(made.path).name}-{attempt}"
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    contestant = cell.contestant
    with LocalBroker() as broker:
        env = _child_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "DROPGATE_TOPIC": run.topic,
                "DROPGATE_TOPIC_PARTITIONS": str(PARTITIONS),
            }
        )
        if contestant in ("product-local", "product-baseline"):
            command = (
                baseline_command(baseline) if contestant == "product-baseline" and baseline else dropgate_command()
            )
            argv = [*command, "ingest", f"./{rel}", "--partner", PARTNER]
        elif contestant == "product-s3":
            if s3 is None:
                raise RuntimeError("product-s3 needs the S3 stage")
            aws_env, uri = s3.prepare(made)
            env.update(aws_env)
            argv = [*dropgate_command(), "ingest", uri]
        else:
            argv = [sys.executable, "-m", _MODULES[contestant], rel]
            if contestant != "floor-parse":
                create_topic(broker.bootstrap, run.topic)
                argv += ["--bootstrap", broker.bootstrap, "--topic", run.topic]
            if contestant == "floor-produce":
                argv += ["--products", str(made.products)]
        run.setup_seconds = time.perf_counter() - began
        busy_before = machine_busy()
        child = run_measured(argv, env, timeout, log_prefix)
        busy_after = machine_busy()
        if busy_before is not None and busy_after is not None:
            run.machine_busy_seconds = busy_after - busy_before
        run.returncode = child.returncode
        run.wall_seconds = child.seconds
        run.cpu_seconds = child.cpu_seconds
        run.maxrss_bytes = child.maxrss_bytes
        run.polled_bytes = child.polled_bytes
        run.tree_pss_bytes = child.tree_pss_bytes
        run.peak_seconds = child.peak_seconds
        if child.timed_out:
            run.problems.append(f"killed after the {timeout:.0f}s timeout")
        if child.returncode != 0:
            tail = "\n".join(child.stderr.strip().splitlines()[-15:])
            run.problems.append(f"exited {child.returncode}; stderr tail:\n{tail}")
        _check_summary(run, child.stdout, made)
        verify_started = time.perf_counter()
        if contestant != "floor-parse" and child.returncode == 0 and not child.timed_out:
            _check_topic(run, broker.bootstrap, made, timeout=max(60.0, min(600.0, timeout)))
        run.verify_seconds = time.perf_counter() - verify_started
        if not broker.running:
            run.problems.append("the broker exited during the run:\n" + broker.output()[-2000:])
    run.verified = not run.problems
    if run.verified and run.wall_seconds is not None:
        build = run.summary.get("build_seconds", 0.0) if isinstance(run.summary, dict) else 0.0
        run.timed_seconds = run.wall_seconds - build
    run.total_seconds = time.perf_counter() - began
    return run


def machine_busy() -> float | None:
    """Seconds of CPU time all cores spent not idle since boot (``/proc/stat``), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(f) for f in fields]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is in user)
    return busy / os.sysconf("SC_CLK_TCK")


def _check_summary(run: Run, stdout: str, made: Generated) -> None:
    lines = stdout.strip().splitlines()
    if run.contestant.startswith("product"):
        run.summary = lines[-1] if lines else ""
        match = _SUMMARY.search(stdout)
        if match is None:
            run.problems.append(f"no summary line in the output: {stdout.strip()[-300:]!r}")
            return
        if match["status"] != "published":
            run.problems.append(f"status {match['status']!r}, expected 'published'")
        if int(match["events"]) != made.products:
            run.problems.append(f"summary says events={match['events']}, expected {made.products}")
        if int(match["tomb"] or 0) != made.deleted:
            run.problems.append(f"summary says tombstones={match['tomb'] or 0}, expected {made.deleted}")
        return
    try:
        summary = json.loads(lines[-1]) if lines else None
    except ValueError:
        summary = None
    if not isinstance(summary, dict):
        run.problems.append(f"no JSON summary line in the output: {stdout.strip()[-300:]!r}")
        return
    run.summary = summary
    if summary.get("records") != made.products:
        run.problems.append(f"summary says records={summary.get('records')}, expected {made.products}")
    if run.contestant == "floor-parse":
        if summary.get("deleted") != made.deleted:
            run.problems.append(f"summary says deleted={summary.get('deleted')}, expected {made.deleted}")
        return
    if summary.get("produced") != made.products:
        run.problems.append(f"summary says produced={summary.get('produced')}, expected {made.products}")
    if summary.get("delivery_errors") or summary.get("unflushed"):
        run.problems.append(
            f"{summary.get('delivery_errors')} delivery error(s) ({summary.get('first_error')}), "
            f"{summary.get('unflushed')} unflushed"
        )


def _check_topic(run: Run, bootstrap: str, made: Generated, *, timeout: float) -> None:
    try:
        count = count_topic(bootstrap, run.topic, timeout=timeout)
    except Exception as error:
        run.problems.append(f"reading the topic back failed: {error}")
        return
    run.topic_count = asdict(count)
    tombstones = 0 if run.contestant == "floor-produce" else made.deleted
    if count.partitions != PARTITIONS:
        run.problems.append(f"topic has {count.partitions} partitions, expected {PARTITIONS}")
    if count.events != made.products:
        run.problems.append(f"topic holds {count.events} messages, expected {made.products}")
    if count.distinct_keys != made.products:
        run.problems.append(f"topic holds {count.distinct_keys} distinct keys, expected {made.products}")
    if count.tombstones != tombstones:
        run.problems.append(f"topic holds {count.tombstones} tombstones, expected {tombstones}")
    if count.null_keys:
        run.problems.append(f"topic holds {count.null_keys} messages without a key")


# -- budget ---------------------------------------------------------------------------------------
def estimate(cell: Cell, cells: list[Cell]) -> float:
    """Seconds the next measurement of ``cell`` will probably cost (setup, run and verification)."""
    own = [r.total_seconds for r in cell.runs]
    if own:
        return max(own) * 1.05 + 2
    others = [
        c for c in cells if c.contestant == cell.contestant and c.fmt == cell.fmt and c.runs and c is not cell
    ] or [c for c in cells if c.contestant == cell.contestant and c.runs and c is not cell]
    if others:
        ref = min(others, key=lambda c: abs(c.products - cell.products))
        fixed = 2.0  # broker start, interpreter start-up: does not scale with the file
        per = max(0.0, max(r.total_seconds for r in ref.runs) - fixed) / ref.products
        return (fixed + per * cell.products) * 1.1 + 2
    return 30.0 + cell.products / 5_000  # nothing known yet: a pessimistic 5,000 records/s


# -- cold start -----------------------------------------------------------------------------------
# "import time: <self µs> | <cumulative µs> | <two spaces per nesting level><module>"
_IMPORTTIME = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\| ( *)(\S.*)$")


def cold_start(repeat: int = 7) -> dict[str, Any]:
    """Import cost of the ingest function in fresh processes, and how much of it is its libraries.

    - ``python -X importtime -c "import handlers.ingest"``: the last line's cumulative µs;
    - the same for the third-party modules that import loads, imported alone (no dropgate code):
      the part of the cold start that only fewer or lighter dependencies could remove;
    - the wall time of ``python -c "import handlers.ingest"`` and of ``python -c pass``.

    One discarded round first (it reads the files into the page cache, which a Lambda package on
    its own disk does not pay twice either), then ``repeat`` interleaved rounds, so a busy moment of
    the machine falls on both measurements alike."""
    env = _child_env({})
    libraries = _third_party_modules(env)
    libraries_code = f"import importlib\nfor name in {libraries!r}:\n    importlib.import_module(name)"
    baseline = {m[4] for m in _importtime_rows("pass", env)}
    importtime_us: list[int] = []
    libraries_us: list[int] = []
    slowest: list[tuple[str, int]] = []
    ingest_wall: list[float] = []
    bare_wall: list[float] = []
    for round_ in range(repeat + 1):
        rows = _importtime_rows("import handlers.ingest", env)
        lib_rows = _importtime_rows(libraries_code, env)
        ingest_wall.append(_wall("import handlers.ingest", env))
        bare_wall.append(_wall("pass", env))
        if round_ == 0:
            ingest_wall.clear()
            bare_wall.clear()
            continue
        importtime_us.append(int(rows[-1][2]))
        # The modules with the largest cumulative time, at any depth: who pays for the import.
        slowest = sorted(((m[4], int(m[2])) for m in rows if m[4] != "handlers.ingest"), key=lambda row: -row[1])[:10]
        libraries_us.append(sum(int(m[2]) for m in lib_rows if not m[3] and m[4] not in baseline))
    return {
        "importtime_cumulative_us": importtime_us,
        "libraries_importtime_us": libraries_us,
        "libraries": sorted({name.split(".")[0] for name in libraries}),
        "import_wall_s": ingest_wall,
        "bare_interpreter_wall_s": bare_wall,
        "slowest_imports_us": slowest,
    }


def _importtime_rows(code: str, env: dict[str, str]) -> list[re.Match[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return [m for m in (_IMPORTTIME.match(line) for line in done.stderr.splitlines()) if m]


def _wall(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    return time.perf_counter() - started


def _third_party_modules(env: dict[str, str]) -> list[str]:
    """The installed (site-packages) modules that ``import handlers.ingest`` loads, in load order."""
    code = (
        "import sys, sysconfig\n"
        "before = set(sys.modules)\n"
        "import handlers.ingest\n"
        "roots = {sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']}\n"
        "for name, module in list(sys.modules.items()):\n"
        "    path = getattr(module, '__file__', None) or ''\n"
        "    if name not in before and any(path.startswith(root) for root in roots) and '__editable__' not in name:\n"
        "        print(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


# -- profile --------------------------------------------------------------------------------------
def profile(made: Generated, out_dir: Path, timeout: float) -> dict[str, Any]:
    """Sample ``dropgate ingest`` on ``made`` with py-spy (cProfile if py-spy is missing or fails)."""
    from devstack.broker import LocalBroker

    prof_dir = out_dir / "profile"
    prof_dir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(made.path, REPO)
    pyspy = Path(sys.executable).parent / "py-spy"
    with LocalBroker() as broker:
        env = _child_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "DROPGATE_TOPIC": f"bench.profile.{uuid.uuid4().hex[:8]}",
                "DROPGATE_TOPIC_PARTITIONS": str(PARTITIONS),
            }
        )
        if pyspy.exists():
            raw = prof_dir / f"pyspy-{Path(made.path).name}.txt"
            argv = [str(pyspy), "record", "--format", "raw", "--rate", "200", "--subprocesses", "--output", str(raw)]
            argv += ["--"]  # --subprocesses: the parsing workers are sampled too
            argv += [*dropgate_command(), "ingest", f"./{rel}", "--partner", PARTNER]
            started = time.perf_counter()
            done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            seconds = time.perf_counter() - started
            if done.returncode == 0 and raw.is_file():
                return {"tool": "py-spy", "file": rel, "seconds": seconds, "raw": str(raw), **_collapse(raw)}
            print(f"py-spy failed ({done.returncode}): {done.stderr[-500:]}; falling back to cProfile", flush=True)
        stats_path = prof_dir / f"cprofile-{Path(made.path).name}.pstats"
        argv = [sys.executable, "-m", "cProfile", "-o", str(stats_path), "-m", "dropgate.cli"]
        argv += ["ingest", f"./{rel}", "--partner", PARTNER]
        started = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=timeout, check=True)
        seconds = time.perf_counter() - started
    return {"tool": "cProfile", "file": rel, "seconds": seconds, **_pstats(stats_path)}


def _short(location: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in location:
            location = location.split(marker, 1)[1]
    return location.replace(str(REPO) + "/", "")


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['func']} ({_short(match['file'])})"


def _collapse(raw: Path) -> dict[str, Any]:
    """py-spy's collapsed stacks → samples by function: own (leaf frame) and inclusive."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count
    top_own = sorted(own.items(), key=lambda item: -item[1])[:15]
    project = [item for item in inclusive.items() if "dropgate/" in item[0] or "parsers/" in item[0]]
    top_inclusive = sorted(project, key=lambda item: -item[1])[:20]
    return {"samples": total, "own": top_own, "inclusive": top_inclusive}


def _pstats(path: Path) -> dict[str, Any]:
    import pstats

    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(value[2] for value in entries.values())
    own = sorted(
        ((f"{name} ({_short(file)}:{line})", value[2]) for (file, line, name), value in entries.items()),
        key=lambda item: -item[1],
    )[:15]
    inclusive = sorted(
        (
            (f"{name} ({_short(file)}:{line})", value[3])
            for (file, line, name), value in entries.items()
            if "dropgate/" in file or "parsers/" in file
        ),
        key=lambda item: -item[1],
    )[:20]
    return {"samples": total, "own": own, "inclusive": inclusive, "unit": "seconds"}


# -- environment ----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_kib"] = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {"python": platform.python_version()}
    for name in ("lxml", "confluent-kafka", "pydantic", "pydantic-core", "pandas", "xmltodict", "orjson", "moto"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import confluent_kafka

        out["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    try:
        from lxml import etree

        out["libxml2"] = ".".join(map(str, etree.LIBXML_VERSION))
    except ImportError:
        pass
    try:
        from devstack.broker import tansu_binary

        done = subprocess.run([str(tansu_binary()), "--version"], capture_output=True, text=True, timeout=30)
        out["tansu"] = (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"
    except (OSError, RuntimeError, subprocess.SubprocessError, IndexError) as error:
        out["tansu"] = f"unknown ({error})"
    return out


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from bench.report import render, write_outputs

    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], metavar="N")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per cell (median reported)")
    parser.add_argument(
        "--large-peer-repeat",
        type=int,
        default=1,
        help="guaranteed measurements of the peers on the largest size (default 1; more if time is left)",
    )
    parser.add_argument("--contestants", nargs="+", choices=CONTESTANTS, default=list(CONTESTANTS))
    parser.add_argument("--quick", action="store_true", help="= --sizes 100000 --repeat 1")
    parser.add_argument("--budget-minutes", type=float, default=24.0, help="from --started (default 24)")
    parser.add_argument("--started", type=float, default=None, help="epoch seconds the budget counts from")
    parser.add_argument("--reserve", type=float, default=45.0, help="seconds kept for the report at the end")
    parser.add_argument("--timeout", type=float, default=900.0, help="kill one contestant after this many seconds")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout of dropgate (with its .venv): its product-local runs beside this one's",
    )
    args = parser.parse_args(argv)
    if args.baseline is None:
        args.contestants = [c for c in args.contestants if c != "product-baseline"]
    else:
        baseline_command(args.baseline.resolve())  # fails now, not after the files are generated
    if args.quick:
        args.sizes, args.repeat, args.large_peer_repeat = [100_000], 1, 1

    wall_started = time.time()
    started = args.started if args.started is not None else wall_started
    deadline = started + args.budget_minutes * 60
    out_dir: Path = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"bench.run: sizes {args.sizes}, up to {args.repeat} runs per cell, budget {args.budget_minutes:g} min "
        f"({max(0.0, deadline - time.time()) / 60:.1f} min left)",
        flush=True,
    )

    state: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "harness_started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(wall_started)),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "versions": versions(),
    }

    # Files: generated once, reused while identical (bench.memory.drop_file).
    files: dict[tuple[int, str], Generated] = {}
    cells = build_plan(args.sizes, args.repeat, args.large_peer_repeat, args.contestants)
    generation_started = time.perf_counter()
    for products, fmt in sorted({(c.products, c.fmt) for c in cells}):
        files[products, fmt] = drop_file(products, fmt, args.seed, out_dir)
    if not args.no_profile:  # the profile runs on the smallest plain file
        smallest = min(args.sizes)
        files.setdefault((smallest, "plain"), drop_file(smallest, "plain", args.seed, out_dir))
    state["generation_seconds"] = time.perf_counter() - generation_started
    state["files"] = {f"{p} {f}": asdict(g) for (p, f), g in files.items()}

    if not args.no_cold_start:
        state["cold_start"] = cold_start()
        print(f"cold start: {json.dumps(state['cold_start']['importtime_cumulative_us'])} µs", flush=True)

    s3 = S3Stage() if any(c.contestant == "product-s3" for c in cells) else None
    profiled = args.no_profile
    try:
        for round_, cell in schedule(cells):
            if round_ > 1 and not profiled:
                state["profile"] = _profile_safely(files[min(args.sizes), "plain"], out_dir, deadline, args.reserve)
                profiled = True
            needed = estimate(cell, cells)
            left = deadline - args.reserve - time.time()
            if needed > left:
                note = f"run {round_} skipped: needs about {needed:.0f}s, {max(left, 0):.0f}s of the budget left"
                if round_ > cell.want:
                    cell.bonus_skipped.append(note)
                else:
                    cell.cut.append(note)
                print(f"{'SKIP' if round_ > cell.want else 'CUT'} {cell.name}: {note}", flush=True)
                continue
            made = files[cell.products, cell.fmt]
            run = measure(
                cell,
                made,
                round_,
                timeout=min(args.timeout, max(60.0, left)),
                out_dir=out_dir,
                s3=s3,
                baseline=args.baseline.resolve() if args.baseline else None,
            )
            cell.runs.append(run)
            _say(cell, run)
            write_outputs(state, cells, out_dir, final=False)
        if not profiled:
            state["profile"] = _profile_safely(files[min(args.sizes), "plain"], out_dir, deadline, 0)
    finally:
        if s3 is not None:
            s3.stop()
    state["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    state["elapsed_seconds"] = time.time() - started
    report = write_outputs(state, cells, out_dir, final=True)
    print()
    print(render(state, cells) if report is None else report)
    failed = [r for c in cells for r in c.runs if not r.verified]
    if failed:
        print(f"{len(failed)} run(s) failed verification", file=sys.stderr)
        return 1
    return 0


def _profile_safely(made: Generated, out_dir: Path, deadline: float, reserve: float) -> dict[str, Any]:
    left = deadline - reserve - time.time()
    if left < 60:
        return {"skipped": f"only {left:.0f}s of the budget left"}
    try:
        result = profile(made, out_dir, timeout=min(600.0, left))
    except Exception as error:  # a profile is informative; it must not sink the benchmark
        return {"error": repr(error)}
    print(f"profiled {result.get('file')} with {result.get('tool')} in {result.get('seconds', 0):.1f}s", flush=True)
    return result


def _say(cell: Cell, run: Run) -> None:
    if run.verified and run.timed_seconds:
        peak = (run.peak_bytes or 0) / 1e6
        print(
            f"ok   {cell.name} #{run.attempt}: {run.timed_seconds:.1f}s {run.products / run.timed_seconds:,.0f} rec/s "
            f"cpu {run.cpu_seconds or 0:.1f}s peak {peak:.0f} MB (setup {run.setup_seconds:.1f}s, "
            f"verify {run.verify_seconds:.1f}s)",
            flush=True,
        )
    else:
        print(f"FAIL {cell.name} #{run.attempt}:", flush=True)
        for problem in run.problems:
            print(f"     {problem}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
