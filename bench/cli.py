"""python -m bench [--reps N] [--parts compare,sizes] ...: run issue 7's benchmark on the
embedded lab, print the table and write bench/results/<stamp>.json (raw records, logs and
QEMU's run records in bench/results/<stamp>/)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.lab import Guest, Lab, vm_names
from bench.measure import link_capacity
from bench.methods import (
    AUTO_CONVERGE,
    DEFAULTS,
    MULTIFD,
    POSTCOPY,
    SEED,
    Method,
    capped,
    migrate_once,
    scale_once,
)
from bench.overhead import run_overhead
from bench.table import render, scale_method, summarise

# The lab's seed VM: 256 MiB plus 4 KiB, like inventory/lab (QEMU 7.2's TCG bug).
SEED_VM = Guest("256 MiB idle", "262148K")
SIZES = [SEED_VM, Guest("1 GiB idle", "1048580K"), Guest("2 GiB idle", "2097156K")]
PARTS = ("overhead", "compare", "sizes", "scale")
# N VM pairs migrating in one run
SCALE = (1, 2, 4)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "qemu": qemu[0] if qemu else "unknown",
        "load_average": os.getloadavg(),
    }


def dirtying_guest(memory: str, rate: int) -> Guest:
    """A guest of MEMORY (a QEMU size) dirtying memory at RATE MiB/s."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    size = memory.strip().upper()
    mib = int(size[:-1]) * units[size[-1]] // 2**20 if size[-1:] in units else int(size)
    return Guest(f"{mib} MiB dirty {rate} MiB/s", memory, rate)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each comparison")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated: overhead (migrate.yml's cost beyond QEMU's time, beside the "
        "floor of an empty play and one module run, and where it goes), "
        "compare (seed vs qmigrate vs multifd, link, no-op runs), "
        "sizes (256 MiB / 1 GiB / 2 GiB, dirtying, auto-converge, postcopy), "
        "scale (1, 2 and 4 VM pairs in one run)",
    )
    parser.add_argument(
        "--dirty-rates",
        default="16,64,256",
        help="the dirtying guest's rates in MiB/s for the sizes part",
    )
    parser.add_argument(
        "--dirty-memory",
        default="1048580K",
        help="memory of the dirtying guest (QEMU size; keep it off multiples of 256 KiB)",
    )
    parser.add_argument(
        "--cap",
        type=int,
        default=8,
        help="MiB/s the migration is held to for a series where the guest dirties at twice "
        "that (0: no such series)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds before a migration is cancelled"
    )
    parser.add_argument(
        "--keep-lab", action="store_true", help="leave the lab up afterwards (default: tear down)"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown or args.reps < 1:
        parser.error(f"--parts takes {', '.join(PARTS)}; --reps at least 1")
    args.dirty_rates = [int(r) for r in args.dirty_rates.split(",") if r]
    return args


def run_series(
    lab: Lab,
    out: Path,
    part: str,
    plan: list[tuple[Guest, Method]],
    reps: int,
    timeout: float,
) -> list[dict[str, Any]]:
    """Each (guest, method) of PLAN REPS times, interleaved so that drift in the
    machine's load spreads over all of them."""
    records = []
    for rep in range(1, reps + 1):
        for guest, method in plan:
            slug = f"{part}-{guest.label}-{method.name}-{rep}".replace(" ", "_")
            slug = "".join(c for c in slug if c.isalnum() or c in "-_")
            print(f"[bench] {part}: {guest.label}, {method.name}, rep {rep}/{reps}", flush=True)
            try:
                record = migrate_once(lab, guest, method, out / slug, timeout)
            except Exception as err:  # a broken run is a result too; the series goes on
                record = {"method": method.name, "guest": guest.label, "status": f"error: {err}"}
            record.update(part=part, rep=rep)
            records.append(record)
            print(
                f"[bench]   {record.get('status')}: total {record.get('total_ms')} ms, "
                f"downtime {record.get('downtime_ms')} ms, wall {record.get('wall_s')} s",
                flush=True,
            )
    return records


def run_scale(lab: Lab, out: Path, reps: int, timeout: float) -> list[dict[str, Any]]:
    """1, 2 and 4 pairs of the seed VM migrating in one run each, REPS times, interleaved.
    Provisioning first bridges the TAP devices of the largest count."""
    lab.must(lab.playbook("playbooks/provision.yml", {"qmigrate_vm_count": max(SCALE)}))
    records = []
    for rep in range(1, reps + 1):
        for count in SCALE:
            print(f"[bench] scale: {count} pair(s), rep {rep}/{reps}", flush=True)
            try:
                record = scale_once(lab, SEED_VM, count, out / f"scale-{count}-{rep}", timeout)
            except Exception as err:  # a broken run is a result too; the series goes on
                record = {
                    "method": scale_method(count),
                    "guest": SEED_VM.label,
                    "pairs": count,
                    "status": f"error: {err}",
                }
            record.update(part="scale", rep=rep)
            records.append(record)
            print(
                f"[bench]   {record.get('status')}: wall {record.get('wall_s')} s, "
                f"longest migration {record.get('total_ms')} ms, span {record.get('span_s')} s",
                flush=True,
            )
    lab.stop_vms(vm_names(max(SCALE)))
    return records


def round_trip_s(lab: Lab, runs: int = 20) -> float:
    """Seconds one module run on a lab host costs the controller (bench/round-trip.yml
    with RUNS module runs, less the same playbook with none)."""
    empty = lab.must(lab.playbook("bench/round-trip.yml", {"round_trips": 0})).seconds
    full = lab.must(lab.playbook("bench/round-trip.yml", {"round_trips": runs})).seconds
    return round((full - empty) / runs, 3)


def noop_overhead(lab: Lab, reps: int, prepare: str) -> list[float]:
    """Wall time of `ansible-playbook migrate.yml` with nothing left to do (the VM has
    migrated): the orchestration's cost alone. PREPARE always: with the lab and
    provisioning checked anyway, as every run did before they were skipped."""
    extra = {**SEED_VM.extra_vars(), "qmigrate_prepare": prepare}
    return [round(lab.must(lab.playbook("migrate.yml", extra)).seconds, 2) for _ in range(reps)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.results / stamp
    lab = Lab(out / "logs", extra_vars={"migration_profile": False})
    report: dict[str, Any] = {"stamp": stamp, "machine": machine(), "args": vars(args).copy()}
    report["args"]["results"] = str(args.results)
    records: list[dict[str, Any]] = []
    print(f"[bench] lab up and provisioned ({out})", flush=True)
    lab.up()
    try:
        report["link_mbps"] = [link_capacity()]
        if "overhead" in args.parts:
            report["overhead"] = run_overhead(
                lab, SEED_VM, out / "overhead", args.reps, args.timeout
            )
        if "compare" in args.parts:
            plan = [(SEED_VM, m) for m in (SEED, DEFAULTS, *MULTIFD)]
            records += run_series(lab, out, "compare", plan, args.reps, args.timeout)
            report["noop_wall_s"] = noop_overhead(lab, args.reps, "auto")
            report["noop_full_wall_s"] = noop_overhead(lab, min(args.reps, 2), "always")
            report["round_trip_s"] = [round_trip_s(lab) for _ in range(min(args.reps, 3))]
        if "sizes" in args.parts:
            plan = [(g, DEFAULTS) for g in SIZES]
            for rate in args.dirty_rates:
                guest = dirtying_guest(args.dirty_memory, rate)
                plan += [(guest, m) for m in (DEFAULTS, AUTO_CONVERGE, POSTCOPY)]
            if args.cap:
                guest = dirtying_guest(args.dirty_memory, 2 * args.cap)
                plan += [(guest, capped(m, args.cap)) for m in (DEFAULTS, AUTO_CONVERGE, POSTCOPY)]
            records += run_series(lab, out, "sizes", plan, 1, args.timeout)
        if "scale" in args.parts:
            records += run_scale(lab, out, args.reps, args.timeout)
        report["link_mbps"].append(link_capacity())
    finally:
        report["machine"]["load_average_end"] = os.getloadavg()
        report["records"] = records
        report["summary"] = summarise(report)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / f"{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
        if not args.keep_lab:
            lab.down()
    table = render(report)
    # Beside the JSON (both kept in git), and as latest.md, which docs/benchmark.md links.
    for name in (f"{stamp}.md", "latest.md"):
        (args.results / name).write_text(table)
    print(table)
    print(f"[bench] wrote {args.results / f'{stamp}.json'} and {args.results / f'{stamp}.md'}")
    return 0
