"""Turn the runs of ``bench.run`` into ``bench/out/run.json`` and the markdown of ``bench/out/report.md``.

Medians are over the runs that verified; a cell whose runs all failed shows as failed, never as a
number. MB is 10^6 bytes (the targets are stated in MB); MB/s is file bytes as stored (gzip:
compressed) per second of the contestant's wall time.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import Cell

MB = 1_000_000
ORDER = (
    "product-local",
    "product-baseline",
    "product-s3",
    "floor-parse",
    "floor-produce",
    "floor-combined",
    "peer-pandas",
    "peer-xmltodict",
)


def stats(cell: Cell) -> dict[str, Any] | None:
    ok = [r for r in cell.runs if r.verified and r.timed_seconds]
    if not ok:
        return None
    seconds = statistics.median(r.timed_seconds for r in ok)
    peaks = [r.peak_bytes for r in ok if r.peak_bytes]
    cpus = [r.cpu_seconds for r in ok if r.cpu_seconds is not None]
    busy = [r.machine_busy_seconds / r.wall_seconds for r in ok if r.machine_busy_seconds and r.wall_seconds]
    return {
        "n": len(ok),
        "failed": len(cell.runs) - len(ok),
        "seconds": seconds,
        "seconds_min": min(r.timed_seconds for r in ok),
        "seconds_max": max(r.timed_seconds for r in ok),
        "records_per_s": cell.products / seconds,
        "mb_per_s": ok[0].size_bytes / MB / seconds,
        "cpu_seconds": statistics.median(cpus) if cpus else None,
        "peak_mb": statistics.median(peaks) / MB if peaks else None,
        "peak_mb_max": max(peaks) / MB if peaks else None,
        "size_mb": ok[0].size_bytes / MB,
        "busy_cores": statistics.median(busy) if busy else None,
        "tree_mb": statistics.median(trees) / MB
        if (trees := [r.tree_pss_bytes for r in ok if r.tree_pss_bytes])
        else None,
    }


def _find(cells: list[Cell], contestant: str, products: int, fmt: str = "plain") -> Cell | None:
    return next((c for c in cells if (c.contestant, c.products, c.fmt) == (contestant, products, fmt)), None)


def _rate(cells: list[Cell], contestant: str, products: int, fmt: str = "plain") -> float | None:
    cell = _find(cells, contestant, products, fmt)
    s = stats(cell) if cell else None
    return s["records_per_s"] if s else None


def _f(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def size_table(cells: list[Cell], products: int) -> str:
    lines = [
        "| contestant | file | runs | wall s (median, min-max) | records/s | MB/s | CPU s "
        "| peak RSS MB (median / max) | process tree PSS MB | machine busy cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    mine = [c for c in cells if c.products == products]
    mine.sort(key=lambda c: (ORDER.index(c.contestant), c.fmt != "plain"))
    for cell in mine:
        s = stats(cell)
        name = Path(cell.runs[0].file).name if cell.runs else f"{cell.fmt}"
        if s is None:
            runs = f"0 of {len(cell.runs)} verified" if cell.runs else "not run"
            lines.append(f"| {cell.contestant} | {name} | {runs} | FAILED | | | | | | |")
            continue
        runs = f"{s['n']}" + (f" (+{s['failed']} failed)" if s["failed"] else "")
        lines.append(
            f"| {cell.contestant} | {name} | {runs} "
            f"| {s['seconds']:.1f} ({s['seconds_min']:.1f}-{s['seconds_max']:.1f}) "
            f"| {s['records_per_s']:,.0f} | {s['mb_per_s']:.2f} | {_f(s['cpu_seconds'], '.1f')} "
            f"| {_f(s['peak_mb'], '.0f')} / {_f(s['peak_mb_max'], '.0f')} | {_f(s['tree_mb'], '.0f')} "
            f"| {_f(s['busy_cores'], '.2f')} |"
        )
    return "\n".join(lines)


def ratios(cells: list[Cell], products: int) -> str:
    lines = ["| ratio (records/s) | value |", "|---|---|"]
    for fmt in ("plain", "gzip"):
        mine = _rate(cells, "product-local", products, fmt)
        if mine is None:
            continue
        for other in ("floor-parse", "floor-produce", "floor-combined", "peer-pandas", "peer-xmltodict"):
            theirs = _rate(cells, other, products, fmt) or (
                _rate(cells, other, products, "plain") if fmt == "gzip" else None
            )
            if theirs is None:
                continue
            against = other if _rate(cells, other, products, fmt) else f"{other} (plain)"
            lines.append(f"| product-local {fmt} / {against} | {mine / theirs:.2f} |")
    for fmt in ("plain", "gzip"):
        mine, before = _rate(cells, "product-local", products, fmt), _rate(cells, "product-baseline", products, fmt)
        if mine and before:
            lines.append(
                f"| product-local {fmt} / product-baseline {fmt} (this checkout / --baseline) | {mine / before:.3f} |"
            )
    local = _rate(cells, "product-local", products)
    s3 = _rate(cells, "product-s3", products)
    if local and s3:
        lines.append(f"| product-s3 / product-local (plain) | {s3 / local:.2f} |")
    return "\n".join(lines)


Verdict = Callable[[str, bool | None, str], None]


def _s3_targets(cells: list[Cell], big: int, local: float | None, verdict: Verdict) -> None:
    """Issue 16: the product from S3 (ledger, stale guard) at ≥ 0.8x the local rate, ≤ 150 MB."""
    s3 = _rate(cells, "product-s3", big)
    name = f"product-s3 {big:,} plain ≥ 0.8 x product-local"
    if local and s3:
        verdict(name, s3 >= 0.8 * local, f"{s3:,.0f} vs {local:,.0f} rec/s = {s3 / local:.2f}x")
    else:
        verdict(name, None, "not measured")
    cell = _find(cells, "product-s3", big, "plain")
    s = stats(cell) if cell else None
    name = f"product-s3 {big:,} plain peak RSS ≤ 150 MB"
    if s is None or s["peak_mb_max"] is None:
        verdict(name, None, "not measured")
    else:
        verdict(name, s["peak_mb_max"] <= 150, f"{s['peak_mb_max']:.1f} MB, largest of {s['n']} run(s)")


def _baseline_cpu_target(cells: list[Cell], big: int, verdict: Verdict) -> None:
    """Issue 16: CPU seconds per million local products ≤ 0.8x the --baseline checkout's."""
    name = f"product-local {big:,} plain CPU s ≤ 0.8 x product-baseline"
    mine, before = _find(cells, "product-local", big, "plain"), _find(cells, "product-baseline", big, "plain")
    a, b = (stats(mine) if mine else None), (stats(before) if before else None)
    if not a or not b or not a["cpu_seconds"] or not b["cpu_seconds"]:
        verdict(name, None, "not measured (make bench BASELINE=DIR)")
        return
    ratio = a["cpu_seconds"] / b["cpu_seconds"]
    verdict(name, ratio <= 0.8, f"{a['cpu_seconds']:.1f} vs {b['cpu_seconds']:.1f} CPU s (medians) = {ratio:.2f}x")


def targets(state: dict[str, Any], cells: list[Cell]) -> list[dict[str, Any]]:
    sizes = sorted({c.products for c in cells})
    out: list[dict[str, Any]] = []
    if not sizes:
        return out
    big, small = sizes[-1], sizes[0]

    def verdict(name: str, ok: bool | None, measured: str) -> None:
        out.append({"target": name, "result": "-" if ok is None else ("PASS" if ok else "FAIL"), "measured": measured})

    local = _rate(cells, "product-local", big)
    combined = _rate(cells, "floor-combined", big)
    if local and combined:
        verdict(
            f"product-local {big:,} plain ≥ 0.85 x combined floor",
            local >= 0.85 * combined,
            f"{local:,.0f} vs {combined:,.0f} rec/s = {local / combined:.2f}x",
        )
    else:
        verdict(f"product-local {big:,} plain ≥ 0.85 x combined floor", None, "not measured")
    peers = {p: _rate(cells, p, big) for p in ("peer-pandas", "peer-xmltodict")}
    measured_peers = {p: r for p, r in peers.items() if r}
    if local and measured_peers:
        fastest = max(measured_peers, key=lambda p: measured_peers[p])
        verdict(
            f"product-local {big:,} plain ≥ 2.5 x the faster peer",
            local >= 2.5 * measured_peers[fastest],
            f"{local:,.0f} vs {fastest} {measured_peers[fastest]:,.0f} rec/s = {local / measured_peers[fastest]:.2f}x",
        )
    else:
        verdict(f"product-local {big:,} plain ≥ 2.5 x the faster peer", None, "not measured")
    for fmt in ("plain", "gzip"):
        cell = _find(cells, "product-local", big, fmt)
        s = stats(cell) if cell else None
        if s is None or s["peak_mb_max"] is None:
            verdict(f"peak RSS ≤ 100 MB, {big:,} {fmt}", None, "not measured")
            continue
        verdict(
            f"peak RSS ≤ 100 MB, {big:,} {fmt}",
            s["peak_mb_max"] <= 100,
            f"{s['peak_mb_max']:.1f} MB ({s['peak_mb_max'] * 1e6 / 2**20:.1f} MiB), largest of {s['n']} run(s)",
        )
        small_cell = _find(cells, "product-local", small, fmt)
        t = stats(small_cell) if small_cell and small != big else None
        if t is None or t["peak_mb_max"] is None:
            continue
        verdict(
            f"peak RSS {big:,} {fmt} within 20% of {small:,} {fmt}",
            s["peak_mb_max"] <= 1.2 * t["peak_mb_max"],
            f"{s['peak_mb_max']:.1f} vs {t['peak_mb_max']:.1f} MB = {s['peak_mb_max'] / t['peak_mb_max']:.2f}x",
        )
    _s3_targets(cells, big, local, verdict)
    _baseline_cpu_target(cells, big, verdict)
    cold = state.get("cold_start")
    if cold:
        ms = statistics.median(cold["importtime_cumulative_us"]) / 1000
        wall = statistics.median(cold["import_wall_s"]) * 1000
        bare = statistics.median(cold["bare_interpreter_wall_s"]) * 1000
        libraries = cold.get("libraries_importtime_us")
        alone = f"; its libraries alone {statistics.median(libraries) / 1000:.0f} ms" if libraries else ""
        verdict(
            "import handlers.ingest < 300 ms",
            ms < 300,
            f"{ms:.0f} ms (-X importtime, median of {len(cold['importtime_cumulative_us'])}){alone}; "
            f"process wall {wall:.0f} ms, of which bare interpreter {bare:.0f} ms",
        )
    return out


def _ms_list(values: list[Any], per_ms: float) -> str:
    """Values as milliseconds (``per_ms`` units in one), then their median and minimum."""
    ms = [value / per_ms for value in values]
    return ", ".join(f"{value:.0f}" for value in ms) + f" ms (median {statistics.median(ms):.0f}, min {min(ms):.0f})"


def render(state: dict[str, Any], cells: list[Cell]) -> str:
    m = state.get("machine", {})
    v = state.get("versions", {})
    parts = [
        "# dropgate benchmark (generated by `python -m bench.run`)",
        "",
        f"- run: started {state.get('started')} (harness {state.get('harness_started')}), finished "
        f"{state.get('finished', '(running)')}, {state.get('elapsed_seconds', 0) / 60:.1f} min from `--started`",
        f"- machine: {m.get('cores')} cores, {m.get('cpu_model', '?')}, "
        f"{m.get('mem_total_kib', 0) / 2**20:.1f} GiB MemTotal ({m.get('mem_total_kib')} kB), {m.get('platform')}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- files generated or reused in {state.get('generation_seconds', 0):.1f}s",
        "",
    ]
    for products in sorted({c.products for c in cells}):
        parts += [f"## {products:,} products", "", size_table(cells, products), "", ratios(cells, products), ""]
    parts += ["## Targets", "", "| target | result | measured |", "|---|---|---|"]
    parts += [f"| {t['target']} | {t['result']} | {t['measured']} |" for t in targets(state, cells)]
    parts.append("")
    cold = state.get("cold_start")
    if cold:
        parts += [
            "## Cold start",
            "",
            "Fresh processes, one discarded round, then interleaved rounds.",
            "",
            "- `python -X importtime -c 'import handlers.ingest'`, last line cumulative: "
            + _ms_list(cold["importtime_cumulative_us"], 1000),
        ]
        if cold.get("libraries_importtime_us"):
            parts.append(
                "- the third-party modules that import loads, imported alone ("
                + ", ".join(cold.get("libraries", []))
                + "): "
                + _ms_list(cold["libraries_importtime_us"], 1000)
            )
        parts += [
            "- wall of `python -c 'import handlers.ingest'`: "
            + _ms_list(cold["import_wall_s"], 0.001)
            + "; of `python -c pass`: "
            + _ms_list(cold["bare_interpreter_wall_s"], 0.001),
            "- slowest imports (cumulative, any depth): "
            + ", ".join(
                f"{name} {us / 1000:.0f} ms"
                for name, us in cold.get("slowest_imports_us", cold.get("slowest_top_level_imports_us", []))
            ),
            "",
        ]
    prof = state.get("profile")
    if prof:
        parts += ["## Profile", ""]
        if "own" in prof:
            unit = prof.get("unit", "samples")
            total = prof.get("samples") or 1
            parts += [
                f"{prof['tool']} of `dropgate ingest ./{prof['file']} --partner acme` "
                f"({prof['seconds']:.1f}s under the profiler, {total:,.0f} {unit}).",
                "",
                "| own time | function |",
                "|---|---|",
            ]
            parts += [f"| {n / total:.1%} | `{name}` |" for name, n in prof["own"][:10]]
            parts += ["", "Inclusive (dropgate and parsers functions):", "", "| inclusive | function |", "|---|---|"]
            parts += [f"| {n / total:.1%} | `{name}` |" for name, n in prof["inclusive"][:15]]
        else:
            parts.append(f"not available: {prof}")
        parts.append("")
    cut = [(c, note) for c in cells for note in c.cut]
    parts += ["## Plan and cuts", ""]
    parts += [
        f"- {c.name}: planned {c.want}"
        + (f" (+ up to {c.bonus} if time was left)" if c.bonus else "")
        + f", measured {len(c.runs)}"
        + (f"; {'; '.join(c.cut)}" if c.cut else "")
        + (f"; bonus {'; '.join(c.bonus_skipped)}" if c.bonus_skipped else "")
        for c in sorted(cells, key=lambda c: (c.products, ORDER.index(c.contestant), c.fmt))
    ]
    if not cut:
        parts.append("- nothing planned was cut")
    parts += [
        "",
        "## Notes",
        "",
        "- Each run: a fresh tansu broker (in memory) and a fresh compacted topic with 3 partitions; the "
        "contestant in its own process; its output read back from the topic and checked (messages = products, "
        "tombstones included; distinct keys = products; tombstones = deleted products, 0 for floor-produce) "
        "before its time counts. floor-parse has no output to read back: its own count of products and "
        "tombstones is checked.",
        "- wall s: spawn to exit of the contestant's process, including interpreter start-up and imports. "
        "floor-produce: less the time it spent building its pre-serialized values (`build_seconds`).",
        "- CPU s: user + system of the contestant's process (wait4). Peak RSS: the larger of its ru_maxrss "
        "and the largest VmHWM sample (50 ms). Neither includes the broker or moto: product-s3's moto server "
        "runs inside the harness process, so serving S3 and DynamoDB costs CPU outside the child. "
        "CPU s includes the product's parsing workers (reaped children); the peak RSS is the largest single "
        "process. Process tree PSS: the largest sampled sum of PSS over the contestant and its descendants "
        "(the product's forked parsing workers), so memory shared between them is counted once.",
        "- machine busy cores: CPU seconds the whole machine spent busy while the contestant ran / its wall "
        "time (2 = both cores saturated): the contestant, the broker, the harness and anything else on the box.",
        "- MB = 10^6 bytes; MB/s = file bytes as stored (gzip: compressed) / wall s.",
        "- Floors and peers use one tuned idempotent producer (acks=all, linger.ms=20, lz4, batch.size 1 MB, "
        "large local queue, murmur2_random, delivery reports for errors only); the product uses its own.",
        "- peer-pandas: read_xml flattens child elements, so locations and the price currency are lost; "
        "peer-xmltodict maps them. Neither checks what dropgate checks (quantity = sum of locations, formats, "
        "limits), and both hold the whole document in memory.",
    ]
    failed = [r for c in cells for r in c.runs if not r.verified]
    if failed:
        parts += ["", "## Failed runs", ""]
        for r in failed:
            parts.append(f"- {r.contestant} {r.products:,} {r.fmt} #{r.attempt}: " + " | ".join(r.problems)[:1500])
    return "\n".join(parts) + "\n"


def write_outputs(state: dict[str, Any], cells: list[Cell], out_dir: Path, *, final: bool) -> str | None:
    data = {
        **state,
        "cells": [
            {
                "contestant": c.contestant,
                "products": c.products,
                "format": c.fmt,
                "want": c.want,
                "cut": c.cut,
                "bonus": c.bonus,
                "bonus_skipped": c.bonus_skipped,
                "stats": stats(c),
                "runs": [r.as_dict() for r in c.runs],
            }
            for c in cells
        ],
        "targets": targets(state, cells),
    }
    (out_dir / "run.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    if not final:
        return None
    text = render(state, cells)
    (out_dir / "report.md").write_text(text)
    return text
