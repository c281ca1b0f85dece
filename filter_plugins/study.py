# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the study's VMs: the pairs that migrate side by side in one run."""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

# A MAC's last octet and a /24's host numbers bound how many pairs one run can have.
MAX_PAIRS = 32


def qmigrate_vms(
    count: int,
    name: str = "vm0",
    address: str = "10.10.1.100/24",
    mac: str = "52:55:00:d1:55:01",
    port: int = 4444,
    ssh_forward: str = "127.0.0.1:10021",
    colocated: bool = False,
    profile: str = "minimal",
) -> list[dict]:
    """The study's COUNT VMs, each the source of one migration pair, numbered from the
    first one's settings: NAME (vm0 -> vm0, vm1, ...), guest ADDRESS (.100, .101, ...),
    MAC (last octet up by one each), migration PORT (4444, 4445, ...), the seed profile's
    SSH_FORWARD (10021, 10023, ...: a same-host destination takes the next port). VM i
    uses TAP device tap<2i>; a destination beside it on its own host, tap<2i+1>.
    Each VM's destination is named like it, or <name>-incoming when COLOCATED (the
    destination host is the source host). More than one VM needs the minimal PROFILE:
    the seed profile's VMs would all boot its one writable disk.
    """
    try:
        count = int(count)
        port = int(port)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"qmigrate_vm_count: {count!r} is not a number") from exc
    if not 1 <= count <= MAX_PAIRS:
        raise AnsibleFilterError(f"qmigrate_vm_count must be 1 to {MAX_PAIRS}, got {count}")
    if count > 1 and profile == "seed":
        raise AnsibleFilterError(
            f"qmigrate_vm_count {count}: more than one VM needs the minimal profile; the seed "
            "profile's VMs would all boot its one writable disk"
        )
    try:
        first = ipaddress.ip_interface(address)
    except ValueError as exc:
        raise AnsibleFilterError(f"the guest address {address!r} is not an address/prefix") from exc
    octets = mac.split(":")
    if len(octets) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{2}", o) for o in octets):
        raise AnsibleFilterError(f"the guest MAC {mac!r} is not a MAC address")
    host, _, forward_port = ssh_forward.rpartition(":")
    if not host or not forward_port.isdigit():
        raise AnsibleFilterError(f"the SSH forward {ssh_forward!r} is not address:port")
    stem, digits = re.fullmatch(r"(.*?)(\d*)", name).groups()
    last = int(octets[5], 16)
    if last + count - 1 > 0xFF:
        raise AnsibleFilterError(f"{count} VMs from MAC {mac} run past its last octet")
    vms = []
    for i in range(count):
        ip = first.ip + i
        if ip not in first.network or ip == first.network.broadcast_address:
            raise AnsibleFilterError(
                f"{count} VMs from {address} run out of {first.network}: give fewer VMs "
                "or a lower first address"
            )
        vm = f"{stem}{int(digits) + i}" if digits else (name if i == 0 else f"{name}{i}")
        vms.append(
            {
                "name": vm,
                "destination": f"{vm}-incoming" if colocated else vm,
                "address": f"{ip}/{first.network.prefixlen}",
                "mac": ":".join([*octets[:5], f"{last + i:02x}"]),
                "tap": f"tap{2 * i}",
                "colocated_tap": f"tap{2 * i + 1}",
                "port": port + i,
                "ssh_forward": f"{host}:{int(forward_port) + 2 * i}",
            }
        )
    return vms


def qmigrate_vm_taps(count: int) -> list[str]:
    """The TAP devices COUNT VMs and their same-host destinations use: tap0 .. tap<2N-1>."""
    return [vm[key] for vm in qmigrate_vms(count) for key in ("tap", "colocated_tap")]


def qmigrate_pending(pairs: list[dict], checked: dict, side: str) -> list[dict]:
    """The PAIRS whose VM on this SIDE (source: the pair's name; destination: its
    destination's) does not run as asked, by CHECKED (the vm role's vm_result): what
    launch.yml still has to start. A VM not checked counts as not running as asked."""
    if side not in ("source", "destination"):
        raise AnsibleFilterError(f"qmigrate_pending: side {side!r} is not source or destination")
    key = "name" if side == "source" else "destination"
    return [pair for pair in pairs if not (checked.get(pair[key]) or {}).get("as_asked")]


def qmigrate_plan_hosts(plan: dict | None, hypervisors: list[str]) -> list[dict]:
    """What the check of every input worked out (its qmigrate_plan), as add_host items:
    each hypervisor with the groups the plays that follow run on (migration_source,
    migration_destination, migration_pairs) and its VMs (vms, colocated; the source also
    the first pair, pair), and localhost in qmigrate_inputs_checked. The source joins
    qmigrate_directed too when one VM migrates: only further VMs need stand-ins of the
    source (direction.yml), and that play then marks the direction decided."""
    hosts: list[dict] = [{"name": "localhost", "groups": ["qmigrate_inputs_checked"]}]
    if not plan:
        return hosts
    source, destination, vms = plan["source"], plan["destination"], plan["vms"]
    for host in hypervisors:
        groups = []
        if host == source:
            groups += ["migration_source", "migration_pairs"]
            if len(vms) == 1:
                groups.append("qmigrate_directed")
        if host == destination:
            groups.append("migration_destination")
        item = {"name": host, "groups": groups, "vms": vms, "colocated": plan["colocated"]}
        if host == source:
            item["pair"] = vms[0]
        hosts.append(item)
    return hosts


def qmigrate_standing(checked: dict, prepare: str = "when-needed") -> list[dict]:
    """How each host's VMs stand, as add_host items (name, groups) from CHECKED, each host
    of the check's play with the vm role's vm_result there (empty or None when the host was
    not asked: a lab host whose namespace does not exist yet). A host whose VMs all run
    joins qmigrate_vm_running, one whose VMs all run as asked also qmigrate_vm_as_asked
    (launch.yml has nothing to start there), one that answered qmigrate_host_answers; and
    when one host's VMs run and every host answered, every host joins qmigrate_prepared
    (migrate.yml skips building the lab and provisioning) unless PREPARE is always; with
    PREPARE skip, whenever every host answered, VMs running or not (a caller that has
    just prepared them, as a one-way campaign's later runs of a guest)."""
    items = []
    for host, vms in checked.items():
        vms = vms or {}
        groups = []
        if vms:
            groups.append("qmigrate_host_answers")
            if all(vm.get("pid") is not None for vm in vms.values()):
                groups.append("qmigrate_vm_running")
            if all(vm.get("as_asked") for vm in vms.values()):
                groups.append("qmigrate_vm_as_asked")
        items.append({"name": host, "groups": groups})
    prepared = (
        prepare != "always"
        and (prepare == "skip" or any("qmigrate_vm_running" in item["groups"] for item in items))
        and all("qmigrate_host_answers" in item["groups"] for item in items)
    )
    if prepared:
        for item in items:
            item["groups"].append("qmigrate_prepared")
    return items


class FilterModule:
    def filters(self):
        return {
            "qmigrate_vms": qmigrate_vms,
            "qmigrate_vm_taps": qmigrate_vm_taps,
            "qmigrate_pending": qmigrate_pending,
            "qmigrate_plan_hosts": qmigrate_plan_hosts,
            "qmigrate_standing": qmigrate_standing,
        }
