"""What orchestrating a migration costs beyond QEMU's own time (issue 13), beside the
floor of what any ansible-playbook run costs here.

For each repetition: a fresh pair of the lab's seed VM, then `ansible-playbook migrate.yml`
with the probes off (wall time, QEMU's total time, the controller's CPU), then the same
again with nothing to do (the VM has migrated). Beside them, the floor: an empty play on
localhost, and one module run on one lab host. The last repetition's per-task times
(Ansible's profile_tasks callback), of the migration and of the no-op, say where the rest
goes.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from bench.lab import Guest, Lab

# profile_tasks' summary lines: "role : Task name ------------------ 1.23s"
TASK_TIME = re.compile(r"^(?P<task>.+?) -{3,} (?P<seconds>[0-9.]+)s$")


def task_times(log: Path) -> list[dict[str, Any]]:
    """Each task's time in a playbook log written with the profile_tasks callback (its
    summary at the end), longest first."""
    text = log.read_text(errors="replace")
    summary = text.rsplit("=" * 20, 1)[-1]
    times = []
    for line in summary.splitlines():
        match = TASK_TIME.match(line.strip())
        if match:
            times.append({"task": match["task"].strip(), "seconds": float(match["seconds"])})
    return sorted(times, key=lambda t: -t["seconds"])


def run_overhead(lab: Lab, guest: Guest, out: Path, reps: int, timeout: float) -> dict[str, Any]:
    floor_empty, floor_module, wall, qemu_s, noop, cpu_share, busy = [], [], [], [], [], [], []
    breakdown: list[dict[str, Any]] = []
    noop_breakdown: list[dict[str, Any]] = []
    for rep in range(1, reps + 1):
        print(f"[bench] overhead: rep {rep}/{reps}", flush=True)
        floor_empty.append(lab.must(lab.playbook("bench/empty.yml")).seconds)
        floor_module.append(
            lab.must(lab.playbook("bench/round-trip.yml", {"round_trips": 1})).seconds
        )
        lab.fresh_pair(guest)
        run_id = f"overhead-{rep}"
        extra = {
            **guest.extra_vars(),
            "migration_profile": False,
            "migration_timeout": timeout,
            "migration_run_id": run_id,
            "qmigrate_results_dir": str(out),
        }
        migration = lab.must(lab.playbook("migrate.yml", extra))
        record = json.loads((out / run_id / "run.json").read_text())
        total = (record["qemu"].get("total_time_ms") or 0) / 1000
        wall.append(migration.seconds)
        qemu_s.append(total)
        cpu_share.append(migration.controller_cpu_pct)
        busy.append(migration.machine_busy_pct)
        if rep == reps:
            breakdown = task_times(migration.log)
        extra["migration_run_id"] = f"{run_id}-noop"
        nothing = lab.must(lab.playbook("migrate.yml", extra))
        noop.append(nothing.seconds)
        if rep == reps:
            noop_breakdown = task_times(nothing.log)
    empty = statistics.median(floor_empty)
    overheads = [w - q for w, q in zip(wall, qemu_s, strict=True)]
    return {
        "reps": reps,
        "floor_empty_s": floor_empty,
        "floor_module_s": floor_module,
        "migrate_wall_s": wall,
        "qemu_total_s": qemu_s,
        "overhead_s": overheads,
        "noop_wall_s": noop,
        "overhead_over_floor": round(statistics.median(overheads) / empty, 1),
        "noop_over_floor": round(statistics.median(noop) / empty, 1),
        "controller_cpu_pct": cpu_share,
        "machine_busy_pct": busy,
        "tasks": breakdown,
        "noop_tasks": noop_breakdown,
    }
