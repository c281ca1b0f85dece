# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for migration runs: the guest's heartbeat, a run record's summary, and what a
migration sets on both QEMUs (its URI, capabilities and parameters)."""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

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


def migration_default_uri(
    uri: str, transport: str, destination_dir: str, destination_address: str, port: Any
) -> str:
    """The migration's URI: URI when given, else a UNIX socket in the destination VM's
    runtime directory DESTINATION_DIR (transport unix, a same-host migration), else TCP to
    the destination host's experiment address (its address without the prefix length)
    on PORT."""
    if uri:
        return str(uri)
    if transport == "unix":
        return f"unix:{destination_dir}/migration.sock"
    address = str(destination_address or "").split("/")[0]
    if not address:
        raise AnsibleFilterError(
            "migration_default_uri: the destination host has no experiment_address to "
            "migrate to over tcp; set it in the inventory, or set migration_uri"
        )
    return f"tcp:{address}:{_int(port, 'migration_port')}"


def migration_settings(
    uri: str,
    defaults: str = "qmigrate",
    postcopy: Any = False,
    multifd_channels: Any = 1,
    max_bandwidth: Any = 0,
    downtime_limit: Any = 300,
    capabilities: dict | None = None,
    parameters: dict | None = None,
) -> dict:
    """What a migration over URI sets on both QEMUs, from the migration role's variables
    of the same names (migration_defaults, migration_postcopy, ...): {uri, capabilities,
    parameters}. qmigrate's defaults (DEFAULTS qmigrate) lift the bandwidth cap, set the
    downtime limit, and use multifd with more than one channel unless postcopy is asked
    for; seed leaves QEMU's own. CAPABILITIES and PARAMETERS, given, win. The migration
    role and the check of every input (which lets a fresh destination listen early with
    them) both take them from here."""
    tuned = defaults == "qmigrate"
    postcopy = boolean(postcopy, strict=False)
    channels = _int(multifd_channels, "migration_multifd_channels")
    multifd = tuned and not postcopy and channels > 1 and re.match(r"(tcp|unix):", uri) is not None
    caps: dict = {}
    if multifd:
        caps["multifd"] = True
    if postcopy:
        caps["postcopy-ram"] = True
    caps.update(capabilities or {})
    params: dict = {}
    if tuned:
        params["max-bandwidth"] = _int(max_bandwidth, "migration_max_bandwidth")
        params["downtime-limit"] = _int(downtime_limit, "migration_downtime_limit")
    if multifd:
        params["multifd-channels"] = channels
    params.update(parameters or {})
    return {"uri": uri, "capabilities": caps, "parameters": params}


# How qemu_migrate (and qemu_vm's account of a source) says a guest left in an earlier run
ALREADY_MIGRATED = "the VM has already migrated"


def migration_found(destination_status: str, source_account: Any, destination_guest: Any) -> dict:
    """What a caller's state check found of a migration done in an earlier run, when the
    destination runs the guest (DESTINATION_STATUS running), as the migration role takes
    it instead of asking again: {source: SOURCE_ACCOUNT when it says the source has
    migrated (qemu_migrate's already-migrated result), guest: DESTINATION_GUEST when the
    guest runs there and its heartbeat went on (a later one than the first, as qemu_guest
    reports it)}; each empty otherwise."""
    found: dict = {"source": {}, "guest": {}}
    if destination_status != "running":
        return found
    account = source_account if isinstance(source_account, dict) else {}
    if account.get("msg") == ALREADY_MIGRATED and account.get("vm_status") == "postmigrate":
        found["source"] = account
    guest = destination_guest if isinstance(destination_guest, dict) else {}
    first, latest = guest.get("first"), guest.get("latest")
    going_on = (
        first is not None and latest is not None and _int(latest, "latest") > _int(first, "first")
    )
    if guest.get("vm_status") == "running" and going_on:
        found["guest"] = guest
    return found


def _int(value: Any, name: str) -> int:
    """VALUE as an integer the way Jinja's int filter reads one (an extra var is a string)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            raise AnsibleFilterError(f"{name}: {value!r} is not an integer") from None


class FilterModule:
    def filters(self):
        return {
            "heartbeats": heartbeats,
            "heartbeat_continuity": heartbeat_continuity,
            "migration_summary": migration_summary,
            "migration_default_uri": migration_default_uri,
            "migration_settings": migration_settings,
            "migration_found": migration_found,
        }
