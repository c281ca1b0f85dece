"""python -m bench.service: the open-loop service client's own limits on this machine.

The probe role's client (roles/probe/files/qmigrate-service) runs from the lab's client
host against the seed profile's Debian guest, idle (no migration, no other probe), at
rising rates, for each service. For each rate it prints what was sent and answered, the
throughput achieved, how far the client fell behind its own schedule, the latency
percentiles and how busy the machine was. The highest rate at which every request was
answered, the throughput kept up with the schedule and the p99 stayed near the lowest
rate's is the highest the client (with the guest) sustains here: a stall seen during a
migration at or below it is the migration's, not the client's.

    python -m bench.service [--rates 1000,2000,...] [--seconds 10] [--keep-lab]

It builds and provisions the lab (seed profile) and boots the guest, and tears the lab
down afterwards unless --keep-lab. Writes bench/results/service-<stamp>.json and .md.
Run it alone on the machine: another load beside it is measured as the client's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.cli import machine
from bench.lab import Lab, busy_pct, cpu_times
from qmigrate.service import latency_figures, parse_client

CLIENT = ROOT / "roles" / "probe" / "files" / "qmigrate-service"
SERVICES = ("redis", "memcached")
RATES = (1000, 2000, 4000, 8000)
TARGET = "10.10.1.100"
# Sustained: the replies kept up with the schedule to within this share, and the p99 stayed
# within this many times the lowest rate's (and every request was answered).
KEPT_UP = 0.99
P99_FACTOR = 3.0


def run_client(service: str, rate: float, seconds: float, records: int) -> dict[str, Any]:
    """One run of the client from labclient: its figures."""
    argv = [
        "ip", "netns", "exec", "labclient", "/usr/bin/python3", str(CLIENT), "run",
        "--service", service, "--target", TARGET, "--rate", str(rate),
        "--duration", str(seconds), "--records", str(records), "--value-size", "1000",
    ]  # fmt: skip
    before = cpu_times()
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds * 3 + 60, check=False
    )
    busy = busy_pct(before, cpu_times())
    if proc.returncode != 0:
        return {"service": service, "rate": rate, "error": proc.stderr[-2000:]}
    doc = json.loads(proc.stdout)
    requests = parse_client(doc, doc["launched"])["requests"]
    replies = sorted(r[1] for r in requests if r[1] is not None)
    span = replies[-1] - requests[0][0] if replies else 0.0
    return {
        "service": service,
        "rate": rate,
        "seconds": seconds,
        **latency_figures(requests),
        "achieved_per_s": round(len(replies) / span, 1) if span > 0 else None,
        "behind_max_ms": doc["behind_max_ms"],
        "reconnects": len(doc["reconnects"]),
        "machine_busy_pct": busy,
    }


def load(service: str, records: int) -> None:
    argv = [
        "ip", "netns", "exec", "labclient", "/usr/bin/python3", str(CLIENT), "load",
        "--service", service, "--target", TARGET, "--records", str(records),
        "--value-size", "1000", "--retry-for", "120",
    ]  # fmt: skip
    found = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    if found["error"]:
        raise RuntimeError(f"loading {service}: {found['error']}")


def sustained(rows: list[dict[str, Any]]) -> float | None:
    """The highest rate of ROWS (one service's, rising) that the client sustained."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return None
    floor = ok[0]["p99_ms"]
    best = None
    for r in ok:
        kept = r["answered"] == r["sent"] and (r["achieved_per_s"] or 0) >= KEPT_UP * r["rate"]
        if kept and r["p99_ms"] is not None and r["p99_ms"] <= P99_FACTOR * max(floor, 1.0):
            best = r["rate"]
        else:
            break
    return best


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# The service client's limits ({report['stamp']})",
        "",
        f"{m['cpu']}, {m['cores']} cores; {m['qemu']}; load average at the start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average'])}. The client on labclient, the "
        f"seed profile's Debian guest (TCG) idle, {report['seconds']:g} s a rate, 1000-byte "
        "values, mix a, zipfian keys, 16 connections.",
        "",
        "| service | rate/s | sent | answered | achieved/s | behind max ms | p50 ms | "
        "p99 ms | p99.9 ms | max ms | machine busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['service']} | {r['rate']:g} | error: {r['error'][:80]} |")
            continue
        lines.append(
            f"| {r['service']} | {r['rate']:g} | {r['sent']} | {r['answered']} | "
            f"{r['achieved_per_s']} | {r['behind_max_ms']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['p99.9_ms']} | {r['max_ms']} | {r['machine_busy_pct']}% |"
        )
    lines.append("")
    for service, rate in report["sustained"].items():
        lines.append(
            f"- {service}: sustained up to {'-' if rate is None else f'{rate:g}'} requests/s "
            f"(every request answered, replies within {KEPT_UP:.0%} of the schedule, p99 "
            f"within {P99_FACTOR:g}x the lowest rate's)."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__)
    parser.add_argument("--rates", default=",".join(str(r) for r in RATES))
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r]
    services = [s for s in args.services.split(",") if s]
    if not rates or min(rates) <= 0 or set(services) - set(SERVICES) or args.seconds <= 0:
        parser.error(f"--rates positive numbers, --services of {', '.join(SERVICES)}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    seed = {"qmigrate_profile": "seed"}
    lab = Lab(args.results / f"service-{stamp}" / "logs", extra_vars=seed)
    report: dict[str, Any] = {"stamp": stamp, "machine": machine(), "seconds": args.seconds}
    rows: list[dict[str, Any]] = []
    print("[bench] lab up, provisioned and the seed guest booted", flush=True)
    lab.up()
    try:
        lab.stop_vms()
        lab.must(lab.playbook("playbooks/launch.yml"))
        for service in services:
            load(service, args.records)
            for rate in rates:
                row = run_client(service, rate, args.seconds, args.records)
                print(f"[bench] {service} {rate:g}/s: {row}", flush=True)
                rows.append(row)
    finally:
        report["machine"]["load_average_end"] = os.getloadavg()
        report["rows"] = rows
        report["sustained"] = {
            s: sustained([r for r in rows if r["service"] == s]) for s in services
        }
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / f"service-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
        if not args.keep_lab:
            lab.down()
    table = render(report)
    (args.results / f"service-{stamp}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
