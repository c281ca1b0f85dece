# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for migration runs: the guest's heartbeat, and a run record's summary."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# Only whole lines count: a log read while QEMU writes may end in half a line.
HEARTBEAT = re.compile(r"qmigrate-heartbeat ([0-9]+) [0-9.]+\r?\n")


def heartbeats(text: str) -> list[int]:
    """The guest's heartbeat counters in a serial log excerpt, in order."""
    if not isinstance(text, str):
        raise AnsibleFilterError(f"heartbeats expects log text, got {type(text).__name__}")
    return [int(n) for n in HEARTBEAT.findall(text)]


def heartbeat_continuity(source_log: str, destination_head: str, destination_tail: str) -> dict:
    """How the guest's heartbeat went from the source's serial log to the destination's.

    SOURCE_LOG is the end of the source's log, DESTINATION_HEAD the start and
    DESTINATION_TAIL the end of the destination's. A guest that kept running shows the
    destination's first counter right after the source's last one (``missed`` counts
    the counters in between) and the destination's counter still going up; a reboot
    would start again at 1.
    """
    source = heartbeats(source_log)
    head = heartbeats(destination_head)
    tail = heartbeats(destination_tail)
    last = source[-1] if source else None
    first = head[0] if head else None
    latest = tail[-1] if tail else None
    known = last is not None and first is not None
    return {
        "source_last": last,
        "destination_first": first,
        "destination_latest": latest,
        "missed": first - last - 1 if known else None,
        "continues": known and first > last and latest is not None and latest > first,
    }


def _fmt(value, unit: str = "", scale: float = 1.0, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value / scale:.{digits}f}{unit}"


def migration_summary(record: dict) -> list[str]:
    """A few lines for people: what moved where, how long it took, what was verified."""
    q = record.get("qemu") or {}
    checks = record.get("verification") or {}
    failed = sorted(k for k, v in checks.items() if v is False)
    lines = [
        "{}: {} -> {} over {}: {}{}".format(
            record.get("vm"),
            record.get("source"),
            record.get("destination"),
            record.get("uri"),
            record.get("status"),
            " (already migrated)" if record.get("already_migrated") else "",
        ),
        "total {}, downtime {}, setup {}, {} transferred at {}".format(
            _fmt(q.get("total_time_ms"), " ms"),
            _fmt(q.get("downtime_ms"), " ms"),
            _fmt(q.get("setup_time_ms"), " ms"),
            _fmt(q.get("transferred_bytes"), " MiB", 1024 * 1024, 1),
            _fmt(q.get("throughput_mbps"), " Mbit/s", 1, 1),
        ),
        "verified: "
        + (", ".join(k for k, v in checks.items() if v) or "-")
        + (f"; FAILED: {', '.join(failed)}" if failed else ""),
        f"record: {record.get('run_id')}/run.json",
    ]
    if record.get("error"):
        lines.insert(1, f"error: {record['error']}")
    return lines


class FilterModule:
    def filters(self):
        return {
            "heartbeats": heartbeats,
            "heartbeat_continuity": heartbeat_continuity,
            "migration_summary": migration_summary,
        }
