"""Medians, spreads and the target ratios of a benchmark run, and its table (Markdown)."""

from __future__ import annotations

import statistics
from typing import Any

# (record key, column heading)
FIGURES = [
    ("wall_s", "wall s"),
    ("total_ms", "total ms"),
    ("downtime_ms", "downtime ms"),
    ("guest_downtime_ms", "guest downtime ms"),
    ("transferred_mib", "MiB sent"),
    ("throughput_mbps", "Mbit/s"),
    ("overhead_s", "overhead s"),
    ("machine_busy_pct", "machine CPU busy %"),
    ("passes", "passes"),
]


def scale_method(count: int) -> str:
    """The table's name for COUNT pairs migrating with qmigrate's defaults."""
    return f"qmigrate defaults, {count} pair{'s' if count > 1 else ''}"


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


# QEMU's thread names (-name debug-threads=on): 7.2's, and those of 9.1 and later
MIGRATION_THREAD = ("live_migration", "mig/src/main")
MULTIFD_SEND = ("multifdsend", "mig/src/send")
MULTIFD_RECV = ("multifdrecv", "mig/dst/recv")


def _cpu(
    record: dict[str, Any], side: str, prefix: str | tuple[str, ...], kind: str = "cpu"
) -> float | None:
    """The CPU (or wait) share of SIDE's (source, destination) threads named PREFIX...
    (a tuple: any of them)."""
    used = record.get(kind, {}).get(side, {})
    values = [v for name, v in used.items() if name.startswith(prefix)]
    return round(sum(values), 1) if values else None


def groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (part, guest, method), in the order first run."""
    rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        key = (record.get("part", ""), record["guest"], record["method"])
        rows.setdefault(key, []).append(record)
    out = []
    for (part, guest, method), runs in rows.items():
        done = [r for r in runs if r.get("status") == "completed"]
        row: dict[str, Any] = {
            "part": part,
            "guest": guest,
            "method": method,
            "runs": len(runs),
            "completed": len(done),
            "statuses": sorted({str(r.get("status")) for r in runs}),
            "errors": sorted({str(r["error"]) for r in runs if r.get("error")}),
        }
        for key, _ in FIGURES:
            row[key] = spread([r[key] for r in done if r.get(key) is not None])
        for name, host, prefix, kind in [
            ("cpu_migration_thread", "source", MIGRATION_THREAD, "cpu"),
            ("wait_migration_thread", "source", MIGRATION_THREAD, "wait"),
            ("cpu_multifd_send", "source", MULTIFD_SEND, "cpu"),
            ("cpu_vcpus", "source", "CPU ", "cpu"),
            ("cpu_dst_main", "destination", "qemu-system", "cpu"),
            ("cpu_multifd_recv", "destination", MULTIFD_RECV, "cpu"),
        ]:
            row[name] = spread([c for r in done if (c := _cpu(r, host, prefix, kind)) is not None])
        zero = [
            r["zero_pages"] / (r["zero_pages"] + r["normal_pages"])
            for r in done
            if r.get("zero_pages") is not None
            and r.get("normal_pages") is not None
            and r["zero_pages"] + r["normal_pages"] > 0
        ]
        row["zero_page_fraction"] = spread(zero) if zero else None
        for key in ("guest_dirty_mib_s", "qemu_dirty_mib_s"):
            row[key] = spread([r[key] for r in runs if r.get(key) is not None])
        out.append(row)
    return out


def _median(row: dict[str, Any] | None, key: str) -> float | None:
    if row is None or row.get(key) is None:
        return None
    return row[key]["median"]


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    rows = groups(report.get("records", []))
    link = report.get("link_mbps") or []
    link_median = statistics.median(link) if link else None

    def find(method_prefix: str) -> dict[str, Any] | None:
        return next(
            (r for r in rows if r["part"] == "compare" and r["method"].startswith(method_prefix)),
            None,
        )

    seed, defaults = find("seed"), find("defaults")
    targets: dict[str, Any] = {}
    seed_total, default_total = _median(seed, "total_ms"), _median(defaults, "total_ms")
    if seed_total and default_total:
        targets["seed_over_defaults_total"] = {
            "value": round(seed_total / default_total, 2),
            "target": ">= 2",
        }
    best = max(
        (r for r in rows if r["part"] == "compare" and _median(r, "throughput_mbps")),
        key=lambda r: _median(r, "throughput_mbps") or 0,
        default=None,
    )
    if best and link_median:
        targets["throughput_over_link"] = {
            "value": round((_median(best, "throughput_mbps") or 0) / link_median, 3),
            "method": best["method"],
            "target": ">= 0.5",
        }

    def put(name: str, value: Any, target: str, note: str) -> None:
        targets[name] = {"value": value, "target": target, "note": note}

    # Issue 13's two targets, from the overhead part (probes off, nothing else measuring
    # beside the run); the no-op also after the compare part when that ran alone.
    overhead = report.get("overhead") or {}
    part = "the overhead part"
    if overhead.get("overhead_s"):
        put(
            "overhead_s",
            spread(overhead["overhead_s"]),
            "<= 3",
            f"{part}: migrate.yml on a running pair, probes off",
        )
    # Issue 14's: a campaign's per-migration cost (its wall time per run less QEMU's
    # total time), the median of each campaign part; a target for ping-pong campaigns,
    # whose runs are the rounds of one playbook, not for one-way ones, whose runs each
    # boot their guest anew
    for name, figures in (report.get("campaigns") or {}).items():
        cost = figures.get("per_migration_cost_s")
        one_way = figures.get("direction") == "one-way"
        put(
            f"campaign_cost_s ({name})",
            round(cost, 2) if cost is not None else None,
            "-" if one_way else "<= 2",
            f"{figures.get('campaign')}: {figures.get('completed')} of "
            f"{figures.get('runs')} runs completed"
            + ("; one-way: each run boots its guest anew" if one_way else "")
            + "; with the bench's ping and samplers beside it",
        )
    if overhead.get("noop_wall_s"):
        put(
            "noop_wall_s",
            spread(overhead["noop_wall_s"]),
            "<= 2",
            f"{part}: each right after its own migration",
        )
    elif report.get("noop_wall_s"):
        put(
            "noop_wall_s",
            spread(report["noop_wall_s"]),
            "<= 2",
            "after the compare part's migrations",
        )
    if report.get("noop_full_wall_s"):
        put(
            "noop_full_wall_s",
            spread(report["noop_full_wall_s"]),
            "-",
            "the same with -e qmigrate_prepare=always (lab and provisioning checked)",
        )
    if report.get("round_trip_s"):
        put(
            "round_trip_s",
            spread(report["round_trip_s"]),
            "-",
            "one module run on a lab host (bench/round-trip.yml), the unit of overhead",
        )
    scale = {r.get("method"): r for r in rows if r["part"] == "scale"}
    one = _median(scale.get(scale_method(1)), "wall_s")
    four = _median(scale.get(scale_method(4)), "wall_s")
    targets["scale_4_over_1"] = (
        {"value": round(four / one, 2), "target": "<= 1.5", "note": f"wall {four} s / {one} s"}
        if one and four
        else {"value": None, "target": "<= 1.5", "note": "not measured"}
    )
    return {"rows": rows, "link_mbps": spread(link), "targets": targets}


def _cell(figure: dict[str, Any] | None) -> str:
    if not figure:
        return "-"
    if figure["n"] == 1 or figure["min"] == figure["max"]:
        return f"{figure['median']:g}"
    return f"{figure['median']:g} ({figure['min']:g}-{figure['max']:g})"


def render(report: dict[str, Any]) -> str:
    summary = report["summary"]
    machine = report["machine"]
    lines = [
        f"Benchmark {report['stamp']} on {machine['host']}: {machine['cpu']}, "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, {machine['qemu']}; "
        f"load {machine['load_average'][0]:.2f} at start, "
        f"{machine.get('load_average_end', [0])[0]:.2f} at end.",
        f"Link (iperf3 labsrc -> labdst, one TCP stream): {_cell(summary['link_mbps'])} Mbit/s.",
        "Median (min-max) over completed runs.",
        "",
        "| part | guest | method | done | "
        + " | ".join(h for _, h in FIGURES)
        + " | migration thread CPU % | its wait for CPU % | vCPUs % | dst main % | zero pages"
        " | dirty MiB/s guest / QEMU |",
        "|" + "---|" * (4 + len(FIGURES) + 6),
    ]
    for row in summary["rows"]:
        cells = [
            row["part"],
            row["guest"],
            row["method"],
            f"{row['completed']}/{row['runs']}",
            *[_cell(row[key]) for key, _ in FIGURES],
            _cell(row["cpu_migration_thread"])
            + (f" + multifd {_cell(row['cpu_multifd_send'])}" if row["cpu_multifd_send"] else ""),
            _cell(row["wait_migration_thread"]),
            _cell(row["cpu_vcpus"]),
            _cell(row["cpu_dst_main"])
            + (f" + multifd {_cell(row['cpu_multifd_recv'])}" if row["cpu_multifd_recv"] else ""),
            _cell(row["zero_page_fraction"]),
            f"{_cell(row['guest_dirty_mib_s'])} / {_cell(row['qemu_dirty_mib_s'])}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        failed = [s for s in row["statuses"] if s != "completed"]
        if failed:
            why = "; ".join(failed + row["errors"])[:300]
            lines.append(f"|  |  | not completed: {why} |")
    lines += overhead_lines(report.get("overhead"))
    lines.append("")
    lines.append("Targets (same run):")
    for name, target in summary["targets"].items():
        value = target["value"]
        shown = _cell(value) if isinstance(value, dict) else value
        extra = f" ({target['method']})" if "method" in target else ""
        note = f" - {target['note']}" if "note" in target else ""
        lines.append(f"- {name}: {shown}{extra}, target {target['target']}{note}")
    return "\n".join(lines) + "\n"


def _seconds(values: list[float | None]) -> str:
    """Median (min-max) to the hundredth: the orchestration's figures are a few seconds."""
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    median, low, high = statistics.median(known), min(known), max(known)
    return f"{median:.2f}" if low == high else f"{median:.2f} ({low:.2f}-{high:.2f})"


def overhead_lines(overhead: dict[str, Any] | None) -> list[str]:
    """The orchestration's cost beside the floor (bench/overhead.py), and where it goes."""
    if not overhead:
        return []
    lines = [
        "",
        f"Orchestration ({overhead['reps']} repetitions, medians (min-max), seconds):",
        "",
        "| what | wall s | multiple of the empty play | target |",
        "|---|---|---|---|",
        f"| floor: empty play on localhost | {_seconds(overhead['floor_empty_s'])} | 1 | - |",
        f"| floor: one module on a lab host | {_seconds(overhead['floor_module_s'])} | - | - |",
        f"| migrate.yml on a running pair, probes off | {_seconds(overhead['migrate_wall_s'])}"
        " | - | - |",
        f"| of which QEMU's total time | {_seconds(overhead['qemu_total_s'])} | - | - |",
        f"| overhead: wall - QEMU | {_seconds(overhead['overhead_s'])} | "
        f"{overhead['overhead_over_floor']} | <= 3 s |",
        f"| no-op migrate.yml (already migrated) | {_seconds(overhead['noop_wall_s'])} | "
        f"{overhead['noop_over_floor']} | <= 2 s |",
        "",
        f"Controller CPU (ansible-playbook, its workers and SSH clients) during migrate.yml: "
        f"{_cell(spread([v for v in overhead['controller_cpu_pct'] if v is not None]))} % of "
        f"the machine's cores; the whole machine: "
        f"{_cell(spread([v for v in overhead['machine_busy_pct'] if v is not None]))} % busy.",
    ]
    for key, what in (("tasks", "one migrate.yml run"), ("noop_tasks", "one no-op migrate.yml")):
        tasks = overhead.get(key) or []
        if not tasks:
            continue
        total = sum(t["seconds"] for t in tasks)
        lines += [
            "",
            f"Where {what}'s time went (profile_tasks; {len(tasks)} tasks, "
            f"{total:.2f} s in tasks):",
            "",
            "| task | s |",
            "|---|---|",
        ]
        lines += [f"| {t['task']} | {t['seconds']:.2f} |" for t in tasks[:25]]
    return lines
