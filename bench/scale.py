"""The scale part: N pairs of the lab's VM migrated together by one migrate.yml run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.lab import Guest, Lab
from bench.table import scale_method


def scale_once(lab: Lab, guest: Guest, count: int, run_dir: Path, timeout: float) -> dict[str, Any]:
    """COUNT fresh pairs of GUEST migrated together by one `migrate.yml` run
    (qmigrate_vm_count), with qmigrate's defaults; the record of it. The run's wall time,
    the longest migration, and the span from the first migration's start to the last one's
    end (overhead: wall time minus that span)."""
    lab.fresh_pair(guest, count)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = lab.playbook(
        "migrate.yml",
        {
            **guest.extra_vars(),
            "qmigrate_vm_count": count,
            "migration_timeout": timeout,
            "qmigrate_results_dir": str(run_dir),
        },
    )
    results = [
        json.loads(p.read_text())
        for p in sorted(run_dir.glob("*/run.json"))
        if p.parent.name != "latest"  # the link to the last record written
    ]
    statuses = sorted({r.get("status", "none") for r in results})
    record: dict[str, Any] = {
        "method": scale_method(count),
        "guest": guest.label,
        "pairs": count,
        "wall_s": round(run.seconds, 2),
        "machine_busy_pct": run.machine_busy_pct,
        "playbook_rc": run.rc,
        "status": "completed"
        if run.rc == 0 and len(results) == count and statuses == ["completed"]
        else f"playbook rc {run.rc}, {len(results)}/{count} records, statuses {statuses}",
        "error": "; ".join(r["error"] for r in results if r.get("error")) or None,
        "per_pair": [
            {
                "vm": r.get("vm"),
                "status": r.get("status"),
                "started": r.get("migrate_started_epoch"),
                "total_ms": r.get("qemu", {}).get("total_time_ms"),
                "downtime_ms": r.get("qemu", {}).get("downtime_ms"),
                "transferred_bytes": r.get("qemu", {}).get("transferred_bytes"),
            }
            for r in results
        ],
    }
    done = [p for p in record["per_pair"] if p["started"] and p["total_ms"]]
    if done and len(done) == count:
        first = min(p["started"] for p in done)
        last = max(p["started"] + p["total_ms"] / 1000 for p in done)
        sent = sum(p["transferred_bytes"] or 0 for p in done)
        record.update(
            total_ms=max(p["total_ms"] for p in done),
            downtime_ms=max(p["downtime_ms"] or 0 for p in done),
            span_s=round(last - first, 3),
            transferred_mib=round(sent / 2**20, 1),
            throughput_mbps=round(sent * 8 / (last - first) / 1e6, 1),
            overhead_s=round(run.seconds - (last - first), 2),
        )
    (run_dir / "bench.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
