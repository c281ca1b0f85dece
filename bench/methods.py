"""Ways to migrate the lab's VM, and one measured migration by any of them."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible.module_utils.migration import FINAL_STATES, HMPMonitor, summary
from ansible.module_utils.qmp import HMPClient

from bench.lab import (
    DESTINATION,
    DESTINATION_ADDRESS,
    SOURCE,
    Guest,
    Lab,
    dirty_reports,
    qemu_pid,
    vm_file,
    wait_for_dirtying,
)
from bench.measure import Pinger, ThreadSampler, ping_gap
from bench.table import scale_method

PORT = 4444
PAGE = 4096


@dataclass(frozen=True)
class Method:
    """seed: the seed's procedure, typed into the HMP monitor with QEMU's defaults
    (migrate_incoming on the destination, which the seed left out, then migrate -d).
    qmigrate: `ansible-playbook migrate.yml` with these capabilities and parameters."""

    name: str
    kind: str = "qmigrate"
    capabilities: dict[str, bool] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    postcopy: bool = False
    # Other migration role variables (migration_multifd_channels, ...).
    variables: dict[str, Any] = field(default_factory=dict)

    def extra_vars(self) -> dict[str, Any]:
        return {
            "migration_capabilities": self.capabilities,
            "migration_parameters": self.parameters,
            "migration_postcopy": self.postcopy,
            **self.variables,
        }


SEED = Method("seed (HMP, QEMU defaults)", kind="seed")
# qmigrate's defaults: no bandwidth cap, one stream (roles/migration).
DEFAULTS = Method("qmigrate defaults")
# The same with multifd, in 2 and 4 streams.
MULTIFD = [
    Method("qmigrate multifd 2", variables={"migration_multifd_channels": 2}),
    Method("qmigrate multifd 4", variables={"migration_multifd_channels": 4}),
]
AUTO_CONVERGE = Method("qmigrate auto-converge", capabilities={"auto-converge": True})
POSTCOPY = Method("qmigrate postcopy", postcopy=True)


def capped(method: Method, mib_s: int) -> Method:
    """METHOD with the migration held to MIB_S MiB/s (max-bandwidth): a dirty rate a TCG
    guest can reach then outruns pre-copy, as a faster guest would outrun the link."""
    return Method(
        f"{method.name}, capped at {mib_s} MiB/s",
        method.kind,
        method.capabilities,
        {**method.parameters, "max-bandwidth": mib_s * 2**20},
        method.postcopy,
        method.variables,
    )


def _seed_migrate(timeout: float) -> tuple[dict[str, Any], dict[str, Any], float, float]:
    """The seed's migration over the monitor sockets: (final stats, parameters in force,
    epoch of the migrate command, seconds until `info migrate` said it was over)."""
    uri = f"tcp:{DESTINATION_ADDRESS}:{PORT}"
    with (
        HMPClient(str(vm_file(DESTINATION, "monitor.sock"))) as dst_client,
        HMPClient(str(vm_file(SOURCE, "monitor.sock"))) as src_client,
    ):
        dst, src = (
            HMPMonitor(dst_client, "destination monitor"),
            HMPMonitor(src_client, "source monitor"),
        )
        in_force = {"parameters": src.parameters(), "capabilities": src.capabilities()}
        dst.incoming(uri)
        started = time.time()
        src.migrate(uri)
        while True:
            stats = src.query()
            if stats.get("status") in FINAL_STATES:
                break
            if time.time() - started > timeout:
                src.cancel()
                stats = src.query()
                break
            time.sleep(0.1)
        return stats, in_force, started, time.time() - started


def migrate_once(
    lab: Lab, guest: Guest, method: Method, run_dir: Path, timeout: float
) -> dict[str, Any]:
    """A fresh pair of GUEST, migrated once by METHOD, measured; the record of it."""
    lab.fresh_pair(guest)
    if guest.dirty:
        wait_for_dirtying(SOURCE)
    run_dir.mkdir(parents=True, exist_ok=True)
    samplers = {
        SOURCE: ThreadSampler(qemu_pid(SOURCE)),
        DESTINATION: ThreadSampler(qemu_pid(DESTINATION)),
    }
    pinger = Pinger(run_dir / "ping.log")
    pinger.wait_for_reply()
    record: dict[str, Any] = {"method": method.name, "guest": guest.label}
    try:
        if method.kind == "seed":
            stats, in_force, started, seconds = _seed_migrate(timeout)
            qemu = summary(stats)
            record.update(
                status=stats.get("status"),
                error=stats.get("error-desc"),
                wall_s=round(seconds, 2),
                in_force=in_force,
            )
        else:
            run_id = run_dir.name
            run = lab.playbook(
                "migrate.yml",
                {
                    **guest.extra_vars(),
                    **method.extra_vars(),
                    "migration_timeout": timeout,
                    "migration_run_id": run_id,
                    "qmigrate_results_dir": str(run_dir.parent),
                },
            )
            run_json = run_dir / "run.json"
            result = json.loads(run_json.read_text()) if run_json.exists() else {}
            qemu = result.get("qemu", {})
            started = float(result.get("migrate_started_epoch") or time.time())
            record.update(
                status=result.get("status", f"playbook rc {run.rc}"),
                error=result.get("error") or None,
                wall_s=round(run.seconds, 2),
                machine_busy_pct=run.machine_busy_pct,
                playbook_rc=run.rc,
                in_force={
                    "parameters": result.get("parameters"),
                    "capabilities": result.get("capabilities"),
                },
                verification=result.get("verification"),
                dirty_pages_rate=[
                    p["dirty_pages_rate"]
                    for p in result.get("timeline", [])
                    if p.get("dirty_pages_rate")
                ],
            )
        time.sleep(1)  # replies from the destination after the switchover
    finally:
        ping_text = pinger.stop()
        for sampler in samplers.values():
            sampler.stop()

    total_s = (qemu.get("total_time_ms") or 0) / 1000
    usages = {host: s.usage(started, started + total_s) for host, s in samplers.items()}
    end = started + total_s
    transferred = qemu.get("transferred_bytes") or 0
    record.update(
        qemu=qemu,
        total_ms=qemu.get("total_time_ms"),
        downtime_ms=qemu.get("downtime_ms"),
        guest_downtime_ms=ping_gap(ping_text, started, end),
        transferred_mib=round(transferred / 2**20, 1),
        throughput_mbps=round(transferred * 8 / total_s / 1e6, 1) if total_s else None,
        passes=qemu.get("dirty_sync_count"),
        zero_pages=qemu.get("duplicate_pages"),
        normal_pages=qemu.get("normal_pages"),
        **{kind: {host: usage[kind] for host, usage in usages.items()} for kind in ("cpu", "wait")},
    )
    if method.kind != "seed" and total_s:
        record["overhead_s"] = round(record["wall_s"] - total_s, 2)
    if guest.dirty:
        rates = [rate for uptime, _, rate in dirty_reports(SOURCE)]
        record["guest_dirty_mib_s"] = round(statistics.median(rates[1:] or rates) / 1024, 1)
        if record.get("dirty_pages_rate"):
            record["qemu_dirty_mib_s"] = round(
                statistics.median(record["dirty_pages_rate"]) * PAGE / 2**20, 1
            )
    (run_dir / "bench.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


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
