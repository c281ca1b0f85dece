"""The compare and convergence parts: the shipped campaigns (campaigns/compare.yml,
campaigns/convergence.yml, or any other campaign file) run by the product's campaign
runner, with what only the benchmark measures taken beside the whole campaign and cut
per run by the times in each run's record: QEMU's threads' CPU time on both hypervisors,
the guest-observed downtime (a 10 ms ping from labclient), the machine's busy share, and
the dirty rate the guest reported."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.lab import DESTINATION, SOURCE, dirty_reports, vm_file
from bench.measure import MachineSampler, Pinger, ThreadSampler, ping_gap
from qmigrate.campaign import Campaign, load
from qmigrate.campaign_runner import Progress, run_campaign

PAGE = 4096
# Named QEMU threads (live_migration, multifdsend_N, CPU n/TCG) for the CPU figures.
THREAD_NAMES = {"vm_extra_args": ["-name", "debug-threads=on"]}
# How long the ping beside a campaign may run at most, whatever happens to the bench.
PING_DEADLINE_S = 6 * 3600


def campaign_file(part: str) -> Path:
    """The shipped campaign a part of that name runs (campaigns/<part>.yml)."""
    return ROOT / "campaigns" / f"{part}.yml"


def guest_label(campaign: Campaign, name: str) -> str:
    """The table's name for a guest: its campaign name, memory and workload."""
    spec = campaign.guests[name]
    memory = spec.variables.get("vm_memory", "the vm role's memory")
    return f"{name} ({memory}, {spec.workload})"


class Watch:
    """What the bench watches while a campaign runs: a ping to the guest, QEMU's threads
    on both hypervisors (whichever QEMU runs there), the machine's CPU."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.pinger = Pinger(directory / "ping.log", PING_DEADLINE_S)
        self.threads = {
            host: ThreadSampler(vm_file(host, "qemu.pid")) for host in (SOURCE, DESTINATION)
        }
        self.machine = MachineSampler()
        self.ping_text = ""

    def stop(self) -> None:
        self.ping_text = self.pinger.stop()
        for sampler in self.threads.values():
            sampler.stop()
        self.machine.stop()


def measured(
    part: str,
    campaign: Campaign,
    row: dict[str, Any],
    record: dict[str, Any] | None,
    watch: Watch,
    ended: float | None,
    dirty_mib_s: float | None,
) -> dict[str, Any]:
    """The bench's record of one campaign run: the campaign's ROW of it (runs.csv), its
    RECORD (run.json), and what WATCH saw during its migration (from the record's
    migrate_started_epoch over QEMU's total time); the machine's busy share over its wall
    time, up to ENDED (epoch seconds)."""
    record = record or {}
    qemu = record.get("qemu") or {}
    out: dict[str, Any] = {
        "part": part,
        "run_id": row["run_id"],
        "guest": guest_label(campaign, row["guest"]),
        "method": row["method"],
        "rep": row["rep"],
        "status": row["status"],
        "error": row["error"] or None,
        "source": row["source"],
        "destination": row["destination"],
        "wall_s": row["wall_s"],
        # The campaign's per-migration cost: its wall time less QEMU's total time
        "overhead_s": row["overhead_s"],
        "qemu": qemu,
        "total_ms": row["total_ms"],
        "downtime_ms": row["downtime_ms"],
        "passes": row["passes"],
        "zero_pages": qemu.get("duplicate_pages"),
        "normal_pages": qemu.get("normal_pages"),
        "in_force": {
            "parameters": record.get("parameters"),
            "capabilities": record.get("capabilities"),
        },
        "verification": record.get("verification"),
    }
    if ended is not None and row["wall_s"] is not None:
        out["machine_busy_pct"] = watch.machine.busy_pct(ended - row["wall_s"], ended)
    started = record.get("migrate_started_epoch")
    total_s = (qemu.get("total_time_ms") or 0) / 1000
    if started and total_s:
        start = float(started)
        end = start + total_s
        sent = qemu.get("transferred_bytes") or 0
        # By side, whichever way the run went (a ping-pong campaign's go both ways)
        sides = {"source": row["source"], "destination": row["destination"]}
        usage = {
            side: watch.threads[host].usage(start, end)
            for side, host in sides.items()
            if host in watch.threads
        }
        out.update(
            guest_downtime_ms=ping_gap(
                watch.ping_text,
                start,
                end,
                (qemu.get("downtime_ms") or 0) / 1000,
                (qemu.get("setup_time_ms") or 0) / 1000,
            ),
            transferred_mib=round(sent / 2**20, 1),
            throughput_mbps=round(sent * 8 / total_s / 1e6, 1),
            **{
                kind: {side: used.get(kind, {}) for side, used in usage.items()}
                for kind in ("cpu", "wait")
            },
        )
    rates = [
        p["dirty_pages_rate"] for p in record.get("timeline") or [] if p.get("dirty_pages_rate")
    ]
    if rates:
        out["qemu_dirty_mib_s"] = round(statistics.median(rates) * PAGE / 2**20, 1)
    if dirty_mib_s is not None:
        out["guest_dirty_mib_s"] = dirty_mib_s
    return out


def guest_dirty_rate(host: str) -> float | None:
    """The median rate the dirtying guest on HOST reported, MiB/s (its first report, the
    fill's second, left out), or None without reports."""
    try:
        rates = [rate for _, _, rate in dirty_reports(host)]
    except OSError:
        return None
    if not rates:
        return None
    return round(statistics.median(rates[1:] or rates) / 1024, 1)


def run_part(
    part: str, path: Path, out: Path, reps: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The campaign at PATH (REPS repetitions instead of its own, if given) run into
    OUT/<part>/ with the bench watching; the bench's records of its runs, and the
    campaign's own figures (its directory and the per-migration cost it printed)."""
    campaign = load(path)
    if reps:
        campaign = replace(campaign, repetitions=reps)
    directory = out / part
    ended: dict[str, float] = {}
    dirty: dict[str, float | None] = {}

    def progress(step: Progress) -> None:
        if step.outcome == "skipped":
            return
        ended[step.run.run_id] = time.time()
        # A one-way run's source keeps the guest's serial log until the next run boots
        # it anew; in a ping-pong campaign the next round may already restart it
        if campaign.guests[step.run.guest].dirty and campaign.direction == "one-way":
            dirty[step.run.run_id] = guest_dirty_rate(SOURCE)
        print(
            f"[bench] {part}: run {step.done}/{step.total} {step.run.method} on "
            f"{step.run.guest}, repetition {step.run.rep}: {step.outcome}"
            + (f" ({step.total_ms:.0f} ms)" if step.total_ms is not None else ""),
            flush=True,
        )

    watch = Watch(out / f"{part}-watch")
    try:
        outcome = run_campaign(
            campaign,
            into=directory / "campaign",
            on_progress=progress,
            extra_vars=THREAD_NAMES,
        )
    finally:
        watch.stop()
    records = []
    for row in outcome.rows:
        run_json = directory / "campaign" / row["run_id"] / "run.json"
        record = json.loads(run_json.read_text()) if run_json.exists() else None
        records.append(
            measured(
                part,
                campaign,
                row,
                record,
                watch,
                ended.get(row["run_id"]),
                dirty.get(row["run_id"]),
            )
        )
    costs = [r["overhead_s"] for r in outcome.rows if r["overhead_s"] is not None]
    figures = {
        "campaign": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "directory": str(directory / "campaign"),
        "repetitions": campaign.repetitions,
        "direction": campaign.direction,
        "runs": len(outcome.rows),
        "completed": outcome.completed,
        "per_migration_cost_s": statistics.median(costs) if costs else None,
    }
    return records, figures
