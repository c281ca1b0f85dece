"""A campaign's results, from its records alone: one flat row per run (runs.csv), and per
cell (a method on a guest) the median, the range and a 95% confidence interval of each
metric, with ratios against the baseline method (summary.md).

Each run's record is its run.json, as every migration writes it; the campaign adds what
only it knows: the run's place in the plan and its wall time (from the run before it in
the same playbook run, or from that playbook's start, to its record).
"""

from __future__ import annotations

import csv
import io
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The columns of runs.csv, in order, each with its meaning (docs/campaigns.md lists them).
COLUMNS: dict[str, str] = {
    "run_id": "the run's name: <guest>-<method>-<repetition>",
    "number": "the run's place in the campaign's plan (from 1)",
    "guest": "the guest's name in the campaign file",
    "method": "the method's name in the campaign file",
    "rep": "the repetition (from 1)",
    "status": "completed, failed, or interrupted (as run.json says); missing: no record",
    "source": "the host the VM left",
    "destination": "the host it went to",
    "qemu_source": "the source's QEMU version (run.json's qemu_versions)",
    "qemu_destination": "the destination's QEMU version",
    "machine": "the VM's machine type on the source",
    "tls": "whether the migration stream was encrypted (migration_tls)",
    "wall_s": (
        "seconds from the end of the run before it in the same playbook run (or that "
        "playbook's start, the VMs stopped before it) to its record: the campaign's clock"
    ),
    "total_ms": "QEMU's total time of the migration",
    "downtime_ms": "QEMU's downtime (the guest stopped)",
    "setup_ms": "QEMU's setup time",
    "transferred_bytes": "bytes QEMU sent",
    "throughput_mbps": "QEMU's throughput, Mbit/s",
    "passes": "dirty-sync passes over RAM (QEMU's dirty-sync-count)",
    "overhead_s": "wall_s minus QEMU's total time and the probe window: what running it cost",
    "guest_downtime_ms": (
        "the longest time a ping waited with no reply around the switchover, less the usual"
        " round trip (probes on)"
    ),
    "pings_lost": "pings lost around the migration (probes on)",
    "tcp_stalled_s": "the longest time the TCP stream moved nothing (probes on)",
    "tcp_survived": "whether the TCP stream to the guest survived (probes on)",
    "beyond_downtime_ms": (
        "how long after QEMU's downtime ended the destination resumed the guest (probes on:"
        " the downtime's anatomy)"
    ),
    "announced_ms": (
        "from the destination's RESUME to QEMU's first announcement of the guest (probes on)"
    ),
    "guest_spoke_ms": (
        "from that announcement to the guest's own first frame from the destination (probes on)"
    ),
    "tcp_back_ms": "from the source's STOP to the TCP stream reaching the destination (probes on)",
    "setup_stall_ms": (
        "the longest time the guest answered no ping in QEMU's setup phase (probes on)"
    ),
    "service_p99_during_ms": (
        "the 99th percentile latency of the service's requests during the migration (a"
        " guest with a service workload)"
    ),
    "service_stall_ms": (
        "the longest time the service's requests waited with no reply, at the switchover"
        " (a guest with a service workload)"
    ),
    "service_failed": (
        "the service's requests failed or timed out (a guest with a service workload)"
    ),
    "verified": "every verification of the record held",
    "error": "why the run failed",
}
# The metrics a summary gives per cell: column -> (label, unit)
METRICS: dict[str, tuple[str, str]] = {
    "total_ms": ("QEMU total time", "ms"),
    "downtime_ms": ("QEMU downtime", "ms"),
    "guest_downtime_ms": ("guest-observed downtime", "ms"),
    "throughput_mbps": ("throughput", "Mbit/s"),
    "transferred_bytes": ("sent", "bytes"),
    "passes": ("passes", ""),
    "tcp_stalled_s": ("TCP stall", "s"),
    "setup_stall_ms": ("setup-phase stall", "ms"),
    "service_p99_during_ms": ("service p99 during", "ms"),
    "service_stall_ms": ("service stall at the switchover", "ms"),
    "overhead_s": ("per-migration cost", "s"),
}
BOOTSTRAP_RESAMPLES = 2000


def _dig(record: dict, *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _part(derived: dict, name: str) -> float | None:
    """One part of the downtime's anatomy, in ms."""
    parts = _dig(derived, "anatomy", "parts") or []
    return next((part["ms"] for part in parts if part.get("name") == name), None)


def row(run: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    """The CSV row of one run: RUN is the campaign's entry for it (run_id, number, guest,
    method, rep, and wall_s when it ran), RECORD its run.json (None: no record)."""
    record = record or {}
    qemu = record.get("qemu") or {}
    derived = _dig(record, "profile", "derived") or {}
    verification = record.get("verification") or {}
    total_ms = qemu.get("total_time_ms")
    wall = run.get("wall_s")
    window = _dig(record, "profile", "window", "duration") if derived else None
    overhead = None
    if wall is not None and total_ms is not None and record.get("status") == "completed":
        overhead = round(wall - total_ms / 1000 - (window or 0), 3)
    values = {
        "run_id": run.get("run_id"),
        "number": run.get("number"),
        "guest": run.get("guest"),
        "method": run.get("method"),
        "rep": run.get("rep"),
        "status": record.get("status", "missing"),
        "source": record.get("source"),
        "destination": record.get("destination"),
        "qemu_source": _dig(record, "qemu_versions", "source", "version") or None,
        "qemu_destination": _dig(record, "qemu_versions", "destination", "version") or None,
        "machine": _dig(record, "qemu_versions", "source", "machine") or None,
        "tls": record.get("tls"),
        "wall_s": wall,
        "total_ms": total_ms,
        "downtime_ms": qemu.get("downtime_ms"),
        "setup_ms": qemu.get("setup_time_ms"),
        "transferred_bytes": qemu.get("transferred_bytes"),
        "throughput_mbps": qemu.get("throughput_mbps"),
        "passes": qemu.get("dirty_sync_count"),
        "overhead_s": overhead,
        "guest_downtime_ms": _dig(derived, "downtime", "guest_observed_ms"),
        "pings_lost": _dig(derived, "ping", "lost_around_migration"),
        "tcp_stalled_s": _dig(derived, "tcp", "stalled_seconds"),
        "tcp_survived": _dig(derived, "tcp", "survived"),
        "beyond_downtime_ms": _dig(derived, "anatomy", "resume", "beyond_downtime_ms"),
        "announced_ms": _part(derived, "until_announced"),
        "guest_spoke_ms": _part(derived, "until_guest_spoke"),
        "tcp_back_ms": _dig(derived, "anatomy", "tcp", "stalled_ms"),
        "setup_stall_ms": _dig(derived, "anatomy", "setup", "ping", "unanswered_ms"),
        "service_p99_during_ms": _dig(derived, "service", "periods", "during", "p99_ms"),
        "service_stall_ms": _dig(derived, "service", "switchover_silence_ms"),
        "service_failed": (
            None
            if _dig(derived, "service", "failed") is None
            else derived["service"]["failed"] + (derived["service"].get("timed_out") or 0)
        ),
        "verified": bool(verification) and all(v for v in verification.values() if v is not None),
        "error": record.get("error") or "",
    }
    return {column: values[column] for column in COLUMNS}


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for entry in rows:
        writer.writerow({k: "" if v is None else v for k, v in entry.items()})
    return out.getvalue()


@dataclass(frozen=True)
class Spread:
    """A metric over a cell's completed runs: median, min, max, and a 95% confidence
    interval of the median (percentile bootstrap; None below 3 runs)."""

    n: int
    median: float
    low: float
    high: float
    ci: tuple[float, float] | None


def spread(values: Sequence[float], seed: int = 0) -> Spread | None:
    """The Spread of VALUES (None when empty). The bootstrap draws from a fixed seed, so
    a summary redrawn from the same records is the same."""
    values = [float(v) for v in values]
    if not values:
        return None
    ci = None
    if len(values) >= 3:
        draw = random.Random(seed)
        medians = sorted(
            statistics.median(draw.choices(values, k=len(values)))
            for _ in range(BOOTSTRAP_RESAMPLES)
        )
        ci = (medians[int(0.025 * len(medians))], medians[int(0.975 * len(medians)) - 1])
    return Spread(len(values), statistics.median(values), min(values), max(values), ci)


def cells(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The rows by cell (guest, method), in the order they first appear."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in rows:
        grouped.setdefault((entry["guest"], entry["method"]), []).append(entry)
    return grouped


def summary(rows: Sequence[dict[str, Any]], baseline: str) -> dict[str, Any]:
    """Per cell: how many runs completed and failed, and each metric's Spread over the
    completed ones, with its median's ratio to BASELINE's on the same guest."""
    grouped = cells(rows)
    result: dict[str, Any] = {}
    for (guest, method), entries in grouped.items():
        done = [e for e in entries if e["status"] == "completed"]
        metrics = {}
        for column in METRICS:
            measured = [e[column] for e in done if e[column] is not None]
            metrics[column] = spread(measured)
        result.setdefault(guest, {})[method] = {
            "runs": len(entries),
            "completed": len(done),
            "failed": sum(1 for e in entries if e["status"] == "failed"),
            "verified": sum(1 for e in done if e["verified"]),
            "metrics": metrics,
        }
    for methods in result.values():
        base = methods.get(baseline)
        for cell in methods.values():
            cell["ratio"] = {}
            for column in METRICS:
                ours, theirs = cell["metrics"][column], base and base["metrics"][column]
                cell["ratio"][column] = (
                    round(ours.median / theirs.median, 3)
                    if ours and theirs and theirs.median
                    else None
                )
    return result


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def summary_markdown(
    name: str,
    description: str,
    rows: Sequence[dict[str, Any]],
    baseline: str,
    plots: Sequence[str] = (),
) -> str:
    """summary.md: per guest, a table of the cells' medians (min-max) [95% CI] and their
    ratio to the baseline, the PLOTS (file names beside it), then the runs that failed."""
    cellwise = summary(rows, baseline)
    lines = [f"# Campaign {name}", ""]
    if description:
        lines += [description, ""]
    lines += [
        f"{len(rows)} runs; medians (min-max) [95% confidence interval of the median, "
        f"bootstrap] over completed runs; x: the median's ratio to {baseline}'s on the "
        "same guest.",
        "",
    ]
    costs = [
        float(r["overhead_s"])
        for r in rows
        if r["status"] == "completed" and r["overhead_s"] is not None
    ]
    if costs:
        lines += [
            f"Per-migration cost (a run's wall time less QEMU's total time and the probe "
            f"window), over all {len(costs)} completed runs: median "
            f"{_figure(statistics.median(costs))} s ({_figure(min(costs))}-"
            f"{_figure(max(costs))}).",
            "",
        ]
    for guest, methods in cellwise.items():
        shown = [c for c in METRICS if any(m["metrics"][c] for m in methods.values())]
        lines += [f"## {guest}", ""]
        header = ["method", "done"] + [f"{METRICS[c][0]} {METRICS[c][1]}".strip() for c in shown]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method, cell in methods.items():
            cols = [method, f"{cell['completed']}/{cell['runs']}"]
            for column in shown:
                got = cell["metrics"][column]
                if got is None:
                    cols.append("-")
                    continue
                text = f"{_figure(got.median)} ({_figure(got.low)}-{_figure(got.high)})"
                if got.ci:
                    text += f" [{_figure(got.ci[0])}-{_figure(got.ci[1])}]"
                ratio = cell["ratio"][column]
                if ratio is not None and method != baseline:
                    text += f" x{ratio:.2f}"
                cols.append(text)
            lines.append("| " + " | ".join(cols) + " |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{METRICS[Path(p).stem][0]}]({p})" for p in plots]
        lines.append("")
    failed = [e for e in rows if e["status"] != "completed"]
    if failed:
        lines += ["## Runs that did not complete", ""]
        lines += [f"- {e['run_id']}: {e['status']}: {e['error'] or '-'}" for e in failed]
        lines.append("")
    return "\n".join(lines)


def plot_metrics(rows: Sequence[dict[str, Any]], directory: Path) -> list[str]:
    """One comparison plot per metric that has figures: for each guest, a box per method
    over its completed runs, each run a point on it. Written into DIRECTORY as
    <metric>.png; their names, in METRICS' order."""
    from qmigrate.report import _pyplot

    plt = _pyplot()
    grouped = cells(r for r in rows if r["status"] == "completed")
    guests = list(dict.fromkeys(guest for guest, _ in grouped))
    methods = list(dict.fromkeys(method for _, method in grouped))
    written = []
    for column, (label, unit) in METRICS.items():
        if not any(e[column] is not None for entries in grouped.values() for e in entries):
            continue
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(guests) * len(methods) + 1), 3.6))
        positions, ticks, names = [], [], []
        for g, guest in enumerate(guests):
            for m, method in enumerate(methods):
                values = [
                    float(e[column])
                    for e in grouped.get((guest, method), [])
                    if e[column] is not None
                ]
                if not values:
                    continue
                where = g * (len(methods) + 1) + m
                ax.boxplot([values], positions=[where], widths=0.6, showfliers=False)
                spread_x = [where + 0.15 * ((i % 5) - 2) / 2 for i in range(len(values))]
                ax.scatter(spread_x, values, s=12, alpha=0.7, color=f"C{m % 10}", zorder=3)
                positions.append(where)
                ticks.append(where)
                names.append(f"{method}\n{guest}" if len(guests) > 1 else method)
        ax.set_xticks(ticks)
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylabel(f"{label} ({unit})" if unit else label)
        ax.set_title(f"{label}: runs over a box per method")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = f"{column}.png"
        fig.savefig(directory / name, dpi=100)
        plt.close(fig)
        written.append(name)
    return written
