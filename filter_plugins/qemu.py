# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render a VM spec (data) into a QEMU command line (argv).

One spec gives both sides of a migration: the destination's argv is the source's plus
``-incoming defer``, so the two can never disagree about devices.

Differences from a hand-typed command line such as the seed's, all deliberate:

* ``-accel kvm|tcg`` instead of ``--enable-kvm``: the accelerator is decided per host and
  both sides use the same one. ``-cpu host`` needs KVM, so TCG gets ``-cpu max``.
* ``-display none`` and the serial console in a log file instead of
  ``-nographic -serial mon:stdio``: QEMU runs daemonized (``-daemonize``, ``-pidfile``),
  with no terminal, and the monitor has its own socket.
* Socket and log paths are absolute, under the VM's runtime directory, and a QMP socket
  (and, given ``events``, a second one for an event recorder) is added beside the seed's
  HMP monitor socket. Socket options use QEMU 7's spelling
  (``server=on,wait=off``) for the seed's deprecated ``server,nowait``.
"""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)
UNIT_KIB = {"K": 1, "M": 1024, "": 1024, "G": 1024 * 1024}
ACCELERATORS = ("kvm", "tcg")
NIC_TYPES = ("tap", "user")
# Where the qemu role unpacks a QEMU of another Debian suite (the qemu_install module):
# <root>/<kind>/usr/bin/qemu-system-x86_64, its firmware under <root>/<kind>/usr/share
QEMU_ROOT = "/opt/qmigrate/qemu"


def _fail(key: str, value: Any, why: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"VM spec {key}: {value!r} {why}")


def memory_kib(value: Any) -> int:
    """A memory size in KiB from an int (MiB) or a string such as '256M', '256', '2G' or
    '262148K'."""
    hint = "is not a size (use MiB, e.g. 256, or '256M', '2G', '262148K')"
    if isinstance(value, bool):
        raise _fail("memory", value, hint)
    if isinstance(value, int):
        kib = value * 1024
    else:
        match = SIZE.match(str(value))
        if not match:
            raise _fail("memory", value, hint)
        kib = int(match.group(1)) * UNIT_KIB[match.group(2).upper()]
    if kib < 16 * 1024:
        raise _fail("memory", value, "is too small for a guest (at least 16 MiB)")
    return kib


def memory_mib(value: Any) -> int:
    """A memory size in whole MiB (see memory_kib)."""
    return memory_kib(value) // 1024


def _memory_arg(value: Any) -> str:
    """QEMU's -m value: in MiB when the size is whole MiB, else in KiB."""
    kib = memory_kib(value)
    return f"{kib // 1024}M" if kib % 1024 == 0 else f"{kib}K"


def _opts(head: str, pairs: list[tuple[str, Any]]) -> str:
    """'head,k=v,...' for the pairs whose value is not None."""
    return ",".join([head, *(f"{k}={v}" for k, v in pairs if v is not None)])


def _nic_args(nic: dict, index: int) -> list[str]:
    where = f"nics[{index}]"
    kind = nic.get("type", "tap")
    if kind not in NIC_TYPES:
        raise _fail(f"{where}.type", kind, f"is not one of {', '.join(NIC_TYPES)}")
    netdev_id = nic.get("id") or f"net{index}"
    if not NAME.match(str(netdev_id)):
        raise _fail(f"{where}.id", netdev_id, "is not a valid QEMU id")
    mac = nic.get("mac")
    if mac is not None and not MAC.match(str(mac)):
        raise _fail(f"{where}.mac", mac, "is not a MAC address like 52:55:00:d1:55:01")
    if kind == "tap":
        if not nic.get("ifname"):
            raise _fail(f"{where}.ifname", nic.get("ifname"), "must name the TAP device")
        netdev = _opts(
            "tap",
            [("id", netdev_id), ("ifname", nic["ifname"]), ("script", "no"), ("downscript", "no")],
        )
    else:
        forwards = nic.get("hostfwd", [])
        if isinstance(forwards, str):
            forwards = [forwards]
        netdev = ",".join([f"user,id={netdev_id}", *(f"hostfwd={f}" for f in forwards)])
    device = _opts(nic.get("model", "virtio-net"), [("netdev", netdev_id), ("mac", mac)])
    return ["-netdev", netdev, "-device", device]


def _drive_args(drive: dict | str, index: int) -> list[str]:
    if isinstance(drive, str):
        drive = {"file": drive}
    if not drive.get("file"):
        raise _fail(f"drives[{index}].file", drive.get("file"), "must name the disk image")
    pairs = [("format", drive.get("format", "raw"))]
    pairs += [(k, v) for k, v in drive.items() if k not in ("file", "format")]
    # QEMU's option syntax reads ",," as a comma that belongs to the value.
    return ["-drive", _opts(f"file={str(drive['file']).replace(',', ',,')}", pairs)]


def qemu_build(version: Any, host: str = "", root: str = QEMU_ROOT) -> dict:
    """Which QEMU HOST runs, for VERSION (qemu_version): ``distro`` (the package manager's),
    ``backports`` (Debian 12's backported QEMU, unpacked under ROOT by the qemu role) or the
    absolute path of a QEMU binary (a build of one's own); or a mapping of inventory host
    names to one of those, with ``default`` for the hosts it does not name.

    Gives {kind, binary, firmware_dirs, prefix}: firmware_dirs go to QEMU as -L, before
    its built-in ones (Debian's QEMU is not relocatable and would take the distribution's
    firmware).
    """
    asked = version
    if isinstance(version, dict):
        unknown = [k for k in version if not isinstance(k, str)]
        if unknown:
            raise AnsibleFilterError(f"qemu_version: {unknown[0]!r} is not a host name")
        asked = version.get(host, version.get("default", "distro"))
        where = f"qemu_version[{host!r}]" if host in version else "qemu_version['default']"
    else:
        where = "qemu_version"
    if not isinstance(asked, str) or not asked.strip():
        raise AnsibleFilterError(
            f"{where}: {asked!r} is not a QEMU: give distro, backports or the absolute path "
            "of a qemu-system-x86_64 binary (or a mapping of host names to those)"
        )
    asked = asked.strip()
    if asked == "distro":
        return {"kind": "distro", "binary": "qemu-system-x86_64", "firmware_dirs": [], "prefix": ""}
    if asked == "backports":
        prefix = f"{str(root).rstrip('/')}/{asked}"
        return {
            "kind": asked,
            "binary": f"{prefix}/usr/bin/qemu-system-x86_64",
            "firmware_dirs": [f"{prefix}/usr/share/qemu", f"{prefix}/usr/share/seabios"],
            "prefix": prefix,
        }
    if asked.startswith("/") and "," not in asked and "\n" not in asked:
        return {"kind": "build", "binary": asked, "firmware_dirs": [], "prefix": ""}
    raise AnsibleFilterError(
        f"{where}: {asked!r} is not a QEMU: give distro, backports or the absolute path "
        "of a qemu-system-x86_64 binary"
    )


def drive_files(drives: list[dict | str]) -> list[dict]:
    """The file of each disk in DRIVES, as {var, path}, for checking they exist."""
    files = []
    for index, drive in enumerate(drives or []):
        path = drive if isinstance(drive, str) else drive.get("file")
        if not path:
            raise _fail(f"drives[{index}].file", path, "must name the disk image")
        files.append({"var": f"vm_drives[{index}]", "path": str(path)})
    return files


def qemu_argv(
    spec: dict, incoming: bool | str = False, problems: list[str] | None = None
) -> list[str]:
    """The argv that starts the VM SPEC; with INCOMING, as a migration destination.

    INCOMING may be true (``-incoming defer``: the URI is given later over QMP) or a URI.
    PROBLEMS, which the caller found in its own inputs (each naming its variable, as the
    vm role's checks do), are refused first, all of them in one error: one task both
    checks and renders.
    """
    if problems:
        raise AnsibleFilterError("; ".join(str(p) for p in problems))
    if not isinstance(spec, dict):
        raise AnsibleFilterError(f"qemu_argv expects a VM spec (a dict), got {spec!r}")
    for key in ("name", "accelerator", "kernel", "qmp", "monitor", "serial", "pidfile"):
        if not spec.get(key):
            raise _fail(key, spec.get(key), "is required")
    for key in ("qmp", "monitor", "events"):
        if "," in str(spec.get(key) or ""):
            # The legacy chardev syntax (unix:PATH,server=on) has no escape for a comma.
            raise _fail(key, spec[key], "must not contain a comma")
    name = str(spec["name"])
    if not NAME.match(name):
        raise _fail("name", name, "is not a valid VM name (letters, digits, '_', '.', '-')")
    accel = spec["accelerator"]
    if accel not in ACCELERATORS:
        raise _fail("accelerator", accel, f"is not one of {', '.join(ACCELERATORS)}")
    cpus = spec.get("cpus", 2)
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise _fail("cpus", cpus, "is not a positive number of vCPUs")

    machine = str(spec.get("machine") or "")
    if machine and not NAME.match(machine):
        raise _fail("machine", machine, "is not a QEMU machine type (such as pc-i440fx-7.2)")
    argv = [spec.get("binary") or "qemu-system-x86_64"]
    for directory in spec.get("firmware_dirs") or []:
        argv += ["-L", str(directory)]
    if machine:
        argv += ["-machine", machine]
    argv += [
        "-name",
        name,
        "-accel",
        accel,
        "-cpu",
        spec.get("cpu") or ("host" if accel == "kvm" else "max"),
        "-smp",
        str(cpus),
        "-m",
        _memory_arg(spec.get("memory", 256)),
        "-kernel",
        spec["kernel"],
    ]
    if spec.get("initrd"):
        argv += ["-initrd", spec["initrd"]]
    argv += ["-display", "none", "-serial", f"file:{spec['serial']}"]
    for i, drive in enumerate(spec.get("drives") or []):
        argv += _drive_args(drive, i)
    if spec.get("append"):
        argv += ["-append", spec["append"]]
    for i, nic in enumerate(spec.get("nics") or []):
        argv += _nic_args(nic, i)
    argv += [
        "-monitor",
        f"unix:{spec['monitor']},server=on,wait=off",
        "-qmp",
        f"unix:{spec['qmp']},server=on,wait=off",
    ]
    if spec.get("events"):
        # A second QMP monitor, for a recorder of QEMU's events: a QMP socket serves one
        # client at a time, and the modules hold qmp.sock while they work.
        argv += ["-qmp", f"unix:{spec['events']},server=on,wait=off"]
    argv += [
        "-pidfile",
        spec["pidfile"],
        "-daemonize",
    ]
    if incoming:
        argv += ["-incoming", "defer" if incoming is True else str(incoming)]
    argv += [str(a) for a in spec.get("extra_args") or []]
    return argv


HOSTFWD = re.compile(r"^(?P<proto>tcp|udp)?:(?P<addr>[^:]*):(?P<port>\d+)-(?P<guest>.*)$")


def colocated_nics(nics: list[dict], taps: dict[str, str], port_offset: int) -> list[dict]:
    """NICS for a migration destination on the same host as its source.

    Both QEMUs run side by side, so the destination cannot open the source's TAP devices
    or bind the source's host forwards: each TAP ifname is renamed by TAPS (tap0 -> tap1)
    and each hostfwd's host port moves up by PORT_OFFSET. Device models, ids and MACs stay:
    the guest must find the same hardware after the migration.
    """
    if isinstance(port_offset, bool) or not isinstance(port_offset, int) or port_offset < 1:
        raise _fail("colocated port offset", port_offset, "is not a positive number")
    moved = []
    for index, nic in enumerate(nics or []):
        nic = dict(nic)
        if nic.get("type", "tap") == "tap":
            ifname = nic.get("ifname")
            if ifname not in taps:
                why = f"has no TAP device for a destination on the same host (taps: {taps})"
                raise _fail(f"nics[{index}].ifname", ifname, why)
            nic["ifname"] = taps[ifname]
        forwards = nic.get("hostfwd", [])
        if isinstance(forwards, str):
            forwards = [forwards]
        shifted = []
        for forward in forwards:
            where = f"nics[{index}].hostfwd"
            match = HOSTFWD.match(str(forward))
            if not match:
                raise _fail(where, forward, "is not like tcp:127.0.0.1:10021-:22")
            port = int(match["port"]) + port_offset
            if port > 65535:
                raise _fail(where, forward, f"cannot move its port by {port_offset}")
            shifted.append(f"{match['proto'] or ''}:{match['addr']}:{port}-{match['guest']}")
        if forwards:
            nic["hostfwd"] = shifted
        moved.append(nic)
    return moved


class FilterModule:
    def filters(self):
        return {
            "qemu_argv": qemu_argv,
            "qemu_memory_mib": memory_mib,
            "qemu_colocated_nics": colocated_nics,
            "qemu_drive_files": drive_files,
            "qemu_build": qemu_build,
        }
