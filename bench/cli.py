"""python -m bench [--reps N] [--parts compare,convergence] ...: run the benchmark on the
embedded lab, print the table and write bench/results/<stamp>.json (raw records, logs,
the campaigns' directories and QEMU's run records in bench/results/<stamp>/)."""

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
from bench.campaigns import campaign_file, run_part
from bench.lab import Guest, Lab, vm_names
from bench.measure import link_capacity
from bench.overhead import run_overhead
from bench.scale import scale_once
from bench.table import render, scale_method, summarise

# The lab's seed VM: 256 MiB plus 4 KiB, like inventory/lab (QEMU 7.2's TCG bug).
SEED_VM = Guest("256 MiB idle", "262148K")
# compare and convergence: the shipped campaigns of those names (campaigns/)
CAMPAIGN_PARTS = ("compare", "convergence")
PARTS = ("overhead", *CAMPAIGN_PARTS, "scale")
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--reps",
        type=int,
        help="repetitions: of the overhead and scale parts (default 5), and of the "
        "campaigns instead of their own",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated: overhead (migrate.yml's cost beyond QEMU's time, beside the "
        "floor of an empty play and one module run, and where it goes), "
        "compare (campaigns/compare.yml: the seed's method vs qmigrate's defaults vs "
        "multifd, then no-op runs), convergence (campaigns/convergence.yml: guest sizes "
        "and dirty rates under pre-copy, auto-converge and postcopy), "
        "scale (1, 2 and 4 VM pairs in one run)",
    )
    parser.add_argument(
        "--campaign",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="another campaign file, measured as the campaign parts are (repeatable; "
        "the campaign file's name is its part)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="seconds before a migration of the overhead and scale parts is cancelled "
        "(a campaign has its own)",
    )
    parser.add_argument(
        "--keep-lab", action="store_true", help="leave the lab up afterwards (default: tear down)"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown or (args.reps is not None and args.reps < 1):
        parser.error(f"--parts takes {', '.join(PARTS)}; --reps at least 1")
    for path in args.campaign:
        if not path.is_file():
            parser.error(f"--campaign {path}: no such file")
    return args


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
    reps = args.reps or 5
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.results / stamp
    lab = Lab(out / "logs", extra_vars={"migration_profile": False})
    # The campaigns run through the API in this process: the same SSH settings as the
    # bench's own playbook runs
    os.environ.update({k: v for k, v in lab.env().items() if k.startswith("ANSIBLE_SSH")})
    report: dict[str, Any] = {"stamp": stamp, "machine": machine(), "args": vars(args).copy()}
    report["args"]["results"] = str(args.results)
    report["args"]["campaign"] = [str(p) for p in args.campaign]
    campaigns = [(p, campaign_file(p)) for p in CAMPAIGN_PARTS if p in args.parts]
    campaigns += [(p.stem, p.resolve()) for p in args.campaign]
    records: list[dict[str, Any]] = []
    print(f"[bench] lab up and provisioned ({out})", flush=True)
    lab.up()
    try:
        report["link_mbps"] = [link_capacity()]
        if "overhead" in args.parts:
            report["overhead"] = run_overhead(lab, SEED_VM, out / "overhead", reps, args.timeout)
        for part, path in campaigns:
            done, figures = run_part(part, path, out, args.reps)
            records += done
            report.setdefault("campaigns", {})[part] = figures
            if part == "compare":
                # Migrated first, not counted: a ping-pong campaign may have brought the
                # guest back to the source
                lab.must(lab.playbook("migrate.yml", SEED_VM.extra_vars()))
                report["noop_wall_s"] = noop_overhead(lab, reps, "auto")
                report["noop_full_wall_s"] = noop_overhead(lab, min(reps, 2), "always")
                report["round_trip_s"] = [round_trip_s(lab) for _ in range(min(reps, 3))]
        if "scale" in args.parts:
            records += run_scale(lab, out, reps, args.timeout)
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
