# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One interface to QEMU's migration commands over either monitor: QMP or HMP.

The qemu_migrate module drives a migration through a ``Monitor``; which protocol is behind
it (QMP for VMs qmigrate started, HMP for a VM started by hand with only the seed's
``-monitor unix:`` socket) does not matter to it. Statistics come back in QMP's shape
(``query-migrate``), so a timeline or a report reads the same either way.

Stdlib only and Python 3.9 compatible, like qmp.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from typing import Any

from ansible.module_utils.qmp import (
    HMPClient,
    QMPClient,
    QMPCommandError,
    QMPError,
    open_monitor,
)

FINAL_STATES = ("completed", "failed", "cancelled")
# Once a migration is in postcopy the destination runs the guest: it can no longer be
# cancelled back to the source, whose RAM is only the part not yet sent.
POSTCOPY_STATES = (
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover-setup",
    "postcopy-recover",
)
RUNNING_STATES = (
    "setup",
    "active",
    "pre-switchover",
    "device",
    "wait-unplug",
    "cancelling",
    *POSTCOPY_STATES,
)
# How a source says its guest left in an earlier run (the run's record reads it).
ALREADY_MIGRATED = "the VM has already migrated"
_TRUE = ("true", "on", "yes", "1")
_FALSE = ("false", "off", "no", "0")


class MigrationError(QMPError):
    """A migration command was refused, or the monitor answered something unexpected."""


def strict_bool(value: Any, what: str) -> bool:
    """VALUE as a boolean, the way Ansible users write one: true/false, on/off, yes/no,
    1/0 (as strings or numbers). Anything else is refused, so that a string such as "off"
    can never turn a capability on."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{what}: {value!r} is not a boolean (true/false, on/off, yes/no, 1/0)")


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what}: {value!r} is not an integer")
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an integer") from None
        if not as_float.is_integer():
            raise ValueError(f"{what}: {value!r} is not an integer") from None
        number = int(as_float)
    if number < 0:
        raise ValueError(f"{what}: {value!r} must not be negative")
    return number


def coerce_parameters(wanted: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """WANTED migration parameters with each value given the type of the value this QEMU
    reports for it (CURRENT, from query-migrate-parameters): an extra var given as
    ``-e`` arrives as a string, which QEMU would refuse ("expects uint64") or, for a
    boolean, misread. Parameters QEMU does not report are left as they are (the caller
    refuses them)."""
    coerced = {}
    for name, value in wanted.items():
        have = current.get(name)
        what = f"parameters.{name}"
        if isinstance(have, bool) or (isinstance(have, str) and have in ("on", "off")):
            value = strict_bool(value, what)
        elif isinstance(have, int):
            value = _integer(value, what)
        elif (
            isinstance(have, str)
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            value = str(value)
        coerced[name] = value
    return coerced


def checked_settings(
    mon: Monitor,
    capabilities: dict[str, Any],
    parameters: dict[str, Any],
    baseline: dict[str, Any] | None = None,
) -> tuple[dict[str, bool], dict[str, Any], dict[str, bool]]:
    """The CAPABILITIES and PARAMETERS to set on the QEMU behind MON, checked against what
    it supports and given the types it reports (an extra var given as -e key=value is a
    string); over QMP the events capability too, for the migration's timeline. Returns
    them with the capabilities QEMU supports; raises ValueError naming what is wrong.

    BASELINE, the capabilities and parameters this QEMU started with (see
    read_baseline), puts back each one not asked for that an earlier migration changed:
    QEMU keeps them from one migration to the next, and a VM that received the guest with
    multifd on would otherwise send it back with multifd on to a destination without it
    (which fails), or carry one method's settings into the next method's run."""
    caps = {
        name: strict_bool(value, f"capabilities.{name}") for name, value in capabilities.items()
    }
    if mon.protocol == "qmp":
        caps.setdefault("events", True)
    supported = mon.capabilities()
    current = mon.parameters()
    if set(caps) - set(supported) or set(parameters) - set(current):
        version = mon.identity().get("version")
        where = f"{version} at {mon.path}" if version else mon.path
        _refuse_unknown("capabilities", caps, supported, where)
        _refuse_unknown("parameters", parameters, current, where)
    try:
        params = coerce_parameters(parameters, current)
    except ValueError as exc:
        raise ValueError(f"{exc} (at {mon.path})") from None
    if baseline:
        started_caps = baseline.get("capabilities") or {}
        for name, now in supported.items():
            if name not in caps and name in started_caps and bool(started_caps[name]) != now:
                caps[name] = bool(started_caps[name])
        started_params = baseline.get("parameters") or {}
        for name, now in current.items():
            if name not in params and name in started_params and started_params[name] != now:
                params[name] = started_params[name]
    return caps, params, supported


# The files QEMU's tls-creds-x509 reads from its directory, by endpoint: a destination is
# the TLS server (and, verifying its peer, wants the source's client certificate), a
# source the client.
TLS_FILES = {
    "server": ("ca-cert.pem", "server-cert.pem", "server-key.pem"),
    "client": ("ca-cert.pem", "client-cert.pem", "client-key.pem"),
}


def tls_object_id(endpoint: str) -> str:
    return f"qmigrate-tls-{endpoint}"


def tls_parameters(endpoint: str, directory: str, hostname: str = "") -> dict[str, Any]:
    """The migration parameters of a TLS migration on this side (ENDPOINT server on the
    destination, client on the source), after checking that DIRECTORY has the files
    QEMU will read; raises ValueError naming what is missing. HOSTNAME, on the source,
    is the name the destination's certificate must carry (empty: the URI's address)."""
    missing = [f for f in TLS_FILES[endpoint] if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise ValueError(
            f"TLS: {directory} has no {', '.join(missing)} (a {endpoint}'s credentials: "
            f"{', '.join(TLS_FILES[endpoint])}); the migration role puts them there with "
            "migration_tls_generate, or give your own"
        )
    params: dict[str, Any] = {"tls-creds": tls_object_id(endpoint)}
    if endpoint == "client" and hostname:
        params["tls-hostname"] = hostname
    return params


def read_baseline(path: str | None) -> dict[str, Any] | None:
    """The capabilities and parameters a VM started with, as qemu_vm keeps them in PATH
    when it starts the VM; None for no PATH or no such file (a VM started otherwise)."""
    if not path:
        return None
    try:
        with open(path) as kept:
            baseline = json.load(kept)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"baseline: {path} cannot be read as JSON: {exc}") from None
    return baseline if isinstance(baseline, dict) else None


def write_baseline(mon: Monitor, path: str) -> None:
    """Keep the capabilities and parameters of the QEMU behind MON, as it started, in
    PATH (written whole or not at all)."""
    document = {"capabilities": mon.capabilities(), "parameters": mon.parameters()}
    partial = f"{path}.partial"
    with open(partial, "w") as out:
        json.dump(document, out, indent=1, sort_keys=True)
    os.replace(partial, path)


def _refuse_unknown(option: str, wanted: dict[str, Any], known: dict[str, Any], where: str) -> None:
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(
            "{}: {} not supported by this QEMU ({}); it supports: {}".format(
                option, ", ".join(unknown), where, ", ".join(sorted(known))
            )
        )


def listening_uris(info: dict[str, Any]) -> list[str]:
    """Where a destination listens, as migration URIs, from its query-migrate (QMP's
    socket-address list, or HMP's "socket address" lines as parse_info_migrate keeps
    them)."""
    uris = []
    for address in info.get("socket-address") or []:
        if isinstance(address, str):
            uris.append(address)
        elif address.get("type") == "inet":
            uris.append("tcp:{}:{}".format(address.get("host"), address.get("port")))
        elif address.get("type") == "unix":
            uris.append("unix:{}".format(address.get("path")))
        else:
            uris.append("{}:{}".format(address.get("type"), address))
    return uris


class Monitor:
    """Migration commands over one monitor connection (see QMPMonitor and HMPMonitor)."""

    protocol = ""

    def __init__(self, client: QMPClient | HMPClient, path: str) -> None:
        self.client = client
        self.path = path

    def close(self) -> None:
        self.client.close()

    def events(self) -> list[dict[str, Any]]:
        """Asynchronous events received since the last call (QMP only)."""
        return []

    def pause(self, seconds: float) -> None:
        """Wait SECONDS between two looks at a migration (HMP: a plain sleep)."""
        time.sleep(seconds)

    def yank_instances(self) -> list[str]:
        """The types of QEMU's yank instances (QEMU 6.0+): "migration" among them while a
        migration is set up, runs, or has not finished tearing down. Empty when the
        monitor cannot tell."""
        return []

    def identity(self, machine_types: bool = False) -> dict[str, Any]:
        """Which QEMU this is: {version ("7.2.22"), package (the distribution's build),
        machine (the VM's machine type, "pc-i440fx-7.2")} and, with MACHINE_TYPES, the
        machine types this QEMU knows (QMP only). A field the monitor cannot tell is empty:
        it is what a run records and what the migration compares with its peer."""
        return {"version": "", "package": "", "machine": ""}

    def load_tls(self, endpoint: str, directory: str, verify_peer: bool = True) -> None:
        """Create (again) the tls-creds-x509 object of ENDPOINT from DIRECTORY, so that the
        files are read as they are now: a VM keeps both objects, as its role in a round
        trip changes."""
        raise NotImplementedError

    def _machine(self, qom_type: Any) -> str:
        return str(qom_type or "").strip().strip('"').removesuffix("-machine")


class QMPMonitor(Monitor):
    protocol = "qmp"

    def __init__(self, client: QMPClient, path: str) -> None:
        super().__init__(client, path)
        self.qmp = client

    def run(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        return self.qmp.execute(command, arguments)

    def events(self) -> list[dict[str, Any]]:
        return self.qmp.pop_events()

    def pause(self, seconds: float) -> None:
        """Wait SECONDS, or less: until QEMU sends an event (a migration's status change,
        a pass), so that the next look comes at once, at the completion too."""
        self.qmp.await_event(seconds)

    def yank_instances(self) -> list[str]:
        try:
            return [str(instance.get("type")) for instance in self.run("query-yank")]
        except QMPCommandError:  # a QEMU older than 6.0
            return []

    def identity(self, machine_types: bool = False) -> dict[str, Any]:
        found = super().identity()
        try:
            version = self.run("query-version")
            qemu = version.get("qemu") or {}
            found["version"] = "{}.{}.{}".format(
                qemu.get("major"), qemu.get("minor"), qemu.get("micro")
            )
            found["package"] = str(version.get("package") or "").strip()
            found["machine"] = self._machine(
                self.run("qom-get", {"path": "/machine", "property": "type"})
            )
            if machine_types:
                found["machine_types"] = sorted(m["name"] for m in self.run("query-machines"))
        except (QMPError, AttributeError, KeyError, TypeError):
            pass
        return found

    def status(self) -> str:
        return self.run("query-status")["status"]

    def capabilities(self) -> dict[str, bool]:
        return {c["capability"]: c["state"] for c in self.run("query-migrate-capabilities")}

    def set_capabilities(self, caps: dict[str, bool]) -> None:
        if caps:
            self.run(
                "migrate-set-capabilities",
                {"capabilities": [{"capability": k, "state": v} for k, v in caps.items()]},
            )

    def parameters(self) -> dict[str, Any]:
        return self.run("query-migrate-parameters")

    def set_parameters(self, params: dict[str, Any]) -> None:
        if params:
            self.run("migrate-set-parameters", params)

    def incoming(self, uri: str) -> None:
        self.run("migrate-incoming", {"uri": uri})

    def load_tls(self, endpoint: str, directory: str, verify_peer: bool = True) -> None:
        object_id = tls_object_id(endpoint)
        with contextlib.suppress(QMPCommandError):  # none yet
            self.run("object-del", {"id": object_id})
        self.run(
            "object-add",
            {
                "qom-type": "tls-creds-x509",
                "id": object_id,
                "dir": directory,
                "endpoint": endpoint,
                "verify-peer": verify_peer,
            },
        )

    def migrate(self, uri: str) -> None:
        self.run("migrate", {"uri": uri})

    def query(self) -> dict[str, Any]:
        return self.run("query-migrate")

    def cancel(self) -> None:
        self.run("migrate_cancel")

    def start_postcopy(self) -> None:
        self.run("migrate-start-postcopy")

    def cont(self) -> None:
        self.run("cont")


# HMP's `info migrate` lines, mapped to query-migrate's keys; sizes are in kbytes there.
_HMP_STATS = {
    "total time": ("total-time", 1),
    "expected downtime": ("expected-downtime", 1),
    "downtime": ("downtime", 1),
    "setup": ("setup-time", 1),
    "transferred ram": ("ram.transferred", 1024),
    "remaining ram": ("ram.remaining", 1024),
    "total ram": ("ram.total", 1024),
    "duplicate": ("ram.duplicate", 1),
    "normal": ("ram.normal", 1),
    "normal bytes": ("ram.normal-bytes", 1024),
    "dirty sync count": ("ram.dirty-sync-count", 1),
    "multifd bytes": ("ram.multifd-bytes", 1024),
    "pages-per-second": ("ram.pages-per-second", 1),
    "dirty pages rate": ("ram.dirty-pages-rate", 1),
    "postcopy request count": ("ram.postcopy-requests", 1),
    "precopy ram": ("ram.precopy-bytes", 1024),
    "downtime ram": ("ram.downtime-bytes", 1024),
    "postcopy ram": ("ram.postcopy-bytes", 1024),
}
_NUMBER = re.compile(r"^(-?[0-9]+(?:\.[0-9]+)?)")


def parse_info_migrate(text: str) -> dict[str, Any]:
    """HMP `info migrate` output as a query-migrate dict (status, times, ram.*)."""
    result: dict[str, Any] = {}
    in_addresses = False
    for line in text.splitlines():
        if in_addresses:  # "socket address: [", one URI per line, then "]"
            if line.strip() == "]":
                in_addresses = False
            elif line.strip():
                result.setdefault("socket-address", []).append(line.strip())
            continue
        if line.strip().lower() == "socket address: [":
            in_addresses = True
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "migration status":
            status, _, reason = value.partition(" ")
            result["status"] = status
            if reason.startswith("(") and reason.endswith(")"):
                result["error-desc"] = reason[1:-1]
            continue
        if key == "throughput":
            match = _NUMBER.match(value)
            if match:
                result.setdefault("ram", {})["mbps"] = float(match.group(1))
            continue
        if key not in _HMP_STATS:
            continue
        match = _NUMBER.match(value)
        if not match:
            continue
        name, scale = _HMP_STATS[key]
        number = float(match.group(1)) * scale
        number = int(number) if number.is_integer() else number
        if name.startswith("ram."):
            result.setdefault("ram", {})[name[4:]] = number
        else:
            result[name] = number
    return result


def _hmp_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class HMPMonitor(Monitor):
    protocol = "hmp"

    def __init__(self, client: HMPClient, path: str) -> None:
        super().__init__(client, path)
        self.hmp = client

    def run(self, line: str) -> str:
        out = self.hmp.command(line)
        # HMP reports errors as text ("Error: ...", "unknown command", "migrate:
        # extraneous characters at the end of line"). The commands that act print nothing
        # when they succeed, so any output of theirs is taken as the error it almost always
        # is. `info` output is data (and a failed migration's reason may say "invalid").
        if not line.startswith("info ") and out.strip():
            raise MigrationError(f"{self.path}: HMP {line!r} failed: {out.strip()}")
        return out

    def identity(self, machine_types: bool = False) -> dict[str, Any]:
        found = super().identity()
        try:
            # "7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3": the version, then the package
            match = re.match(r"\s*(\d+\.\d+\.\d+)\s*(.*)", self.hmp.command("info version"))
            if match:
                found["version"], found["package"] = match.group(1), match.group(2).strip()
            machine = self.hmp.command("qom-get /machine type").strip()
            if machine.startswith('"'):
                found["machine"] = self._machine(machine)
        except QMPError:
            pass
        return found

    def yank_instances(self) -> list[str]:
        # "chardev: compat_monitor0", "migration", ...; an older QEMU knows no such command.
        out = self.run("info yank")
        if "unknown command" in out:
            return []
        return [line.partition(":")[0].strip() for line in out.splitlines() if line.strip()]

    def status(self) -> str:
        out = self.run("info status")
        match = re.search(r"VM status: (\S+)(?: \((\S+)\))?", out)
        if not match:
            raise MigrationError(f"{self.path}: cannot read the VM status from {out!r}")
        # QMP calls "paused (inmigrate)" inmigrate, "paused (postmigrate)" postmigrate.
        return match.group(2) or match.group(1)

    def capabilities(self) -> dict[str, bool]:
        caps = {}
        for line in self.run("info migrate_capabilities").splitlines():
            name, sep, state = line.partition(":")
            if sep and state.strip() in ("on", "off"):
                caps[name.strip()] = state.strip() == "on"
        return caps

    def set_capabilities(self, caps: dict[str, bool]) -> None:
        for name, state in caps.items():
            self.run(f"migrate_set_capability {name} {_hmp_value(state)}")

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for line in self.run("info migrate_parameters").splitlines():
            name, sep, value = line.partition(":")
            if not sep:
                continue
            value = value.strip()
            match = _NUMBER.match(value)
            params[name.strip()] = (
                int(match.group(1)) if match and match.group(1).isdigit() else value
            )
        return params

    def set_parameters(self, params: dict[str, Any]) -> None:
        for name, value in params.items():
            # HMP reads a bare number of max-bandwidth as MiB/s; a B suffix keeps bytes.
            if name in ("max-bandwidth", "max-postcopy-bandwidth") and isinstance(value, int):
                value = f"{value}B"
            self.run(f"migrate_set_parameter {name} {_hmp_value(value)}")

    def incoming(self, uri: str) -> None:
        self.run(f"migrate_incoming {uri}")

    def load_tls(self, endpoint: str, directory: str, verify_peer: bool = True) -> None:
        object_id = tls_object_id(endpoint)
        self.hmp.command(f"object_del {object_id}")  # none yet: an error, ignored
        if "," in directory:
            raise MigrationError(f"{self.path}: HMP cannot name the directory {directory!r}")
        peer = "on" if verify_peer else "off"
        self.run(
            f"object_add tls-creds-x509,id={object_id},dir={directory},endpoint={endpoint},"
            f"verify-peer={peer}"
        )

    def migrate(self, uri: str) -> None:
        self.run(f"migrate -d {uri}")

    def query(self) -> dict[str, Any]:
        return parse_info_migrate(self.run("info migrate"))

    def cancel(self) -> None:
        self.run("migrate_cancel")

    def start_postcopy(self) -> None:
        self.run("migrate_start_postcopy")

    def cont(self) -> None:
        self.run("cont")


def _machine_version(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name.rsplit("-", 1)[-1]))


def machine_family(name: str) -> str:
    """A versioned machine type's family: pc-i440fx-7.2 -> pc-i440fx, pc-q35-10.0 -> pc-q35."""
    head, _, tail = name.rpartition("-")
    return head if head and re.fullmatch(r"\d+(\.\d+)*", tail) else name


def machine_mismatch(mine: dict[str, Any], peer: dict[str, Any], where: str) -> str:
    """Why a VM of machine type MINE["machine"] cannot migrate to PEER's (a destination
    QEMU waiting with another type; QEMU migrates only between two VMs of one type), with
    the newest type of the family both QEMUs know; empty when nothing is known against it.
    MINE and PEER are identity() dicts, PEER's with its machine_types."""
    have, other = mine.get("machine") or "", peer.get("machine") or ""
    if not have or not other or have == other:
        return ""
    family = machine_family(have)
    theirs = set(peer.get("machine_types") or [])
    ours = set(mine.get("machine_types") or [])
    both = sorted(
        (t for t in theirs & ours if machine_family(t) == family and _machine_version(t)),
        key=_machine_version,
    )
    if both:
        hint = f"start both with vm_machine={both[-1]}, the newest {family} type both know"
    elif theirs and have not in theirs:
        hint = f"the destination's QEMU does not know {have}; no {family} type is common to both"
    else:
        hint = "start both with one vm_machine both QEMUs know"
    return (
        f"{where} runs machine type {have} (QEMU {mine.get('version') or '?'}), the destination "
        f"waits with {other} (QEMU {peer.get('version') or '?'}): QEMU migrates only between "
        f"VMs of the same machine type; {hint}"
    )


def connect(path: str, timeout: float) -> Monitor:
    """A Monitor on PATH, QMP or HMP as the socket answers."""
    client = open_monitor(path, timeout)
    if isinstance(client, QMPClient):
        return QMPMonitor(client, path)
    return HMPMonitor(client, path)


def sample(stats: dict[str, Any], start: float) -> dict[str, Any]:
    """One timeline point from a query-migrate result."""
    ram = stats.get("ram", {})
    return {
        "t": round(time.time() - start, 4),
        "status": stats.get("status", "none"),
        "transferred": ram.get("transferred"),
        "remaining": ram.get("remaining"),
        "total": ram.get("total"),
        "mbps": ram.get("mbps"),
        "dirty_sync_count": ram.get("dirty-sync-count"),
        "dirty_pages_rate": ram.get("dirty-pages-rate"),
    }


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The final statistics of a migration, flat and with units in their names."""
    ram = stats.get("ram", {})
    return {
        "status": stats.get("status"),
        "total_time_ms": stats.get("total-time"),
        "downtime_ms": stats.get("downtime"),
        "expected_downtime_ms": stats.get("expected-downtime"),
        "setup_time_ms": stats.get("setup-time"),
        "transferred_bytes": ram.get("transferred"),
        "remaining_bytes": ram.get("remaining"),
        "total_bytes": ram.get("total"),
        "throughput_mbps": ram.get("mbps"),
        "dirty_sync_count": ram.get("dirty-sync-count"),
        "duplicate_pages": ram.get("duplicate"),
        "normal_pages": ram.get("normal"),
        "precopy_bytes": ram.get("precopy-bytes"),
        "downtime_bytes": ram.get("downtime-bytes"),
        "postcopy_bytes": ram.get("postcopy-bytes"),
        "multifd_bytes": ram.get("multifd-bytes"),
        "error": stats.get("error-desc"),
    }


def migrated_account(mon: Monitor, stats: dict[str, Any]) -> dict[str, Any] | None:
    """What a source VM whose guest has migrated away (postmigrate, its last migration
    completed, STATS being its query-migrate) tells of that migration, as qemu_migrate
    reports a VM that has already migrated; None for any other VM."""
    if stats.get("status") != "completed":
        return None
    vm_status = mon.status()
    if vm_status != "postmigrate":
        return None
    return {
        "changed": False,
        "status": "completed",
        "msg": ALREADY_MIGRATED,
        "stats": summary(stats),
        "timeline": [],
        "events": [],
        "protocol": mon.protocol,
        "capabilities": mon.capabilities(),
        "parameters": mon.parameters(),
        "vm_status": vm_status,
    }


__all__ = [
    "ALREADY_MIGRATED",
    "FINAL_STATES",
    "POSTCOPY_STATES",
    "RUNNING_STATES",
    "HMPMonitor",
    "MigrationError",
    "Monitor",
    "QMPCommandError",
    "QMPError",
    "QMPMonitor",
    "coerce_parameters",
    "connect",
    "listening_uris",
    "migrated_account",
    "parse_info_migrate",
    "read_baseline",
    "sample",
    "strict_bool",
    "summary",
    "write_baseline",
]
