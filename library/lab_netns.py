#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_netns
short_description: Build or remove the embedded lab's network namespaces
description:
  - Builds Cloudlab's experiment LAN on one machine. A switch namespace holds a bridge;
    every lab host is a namespace whose experiment NIC is one end of a veth pair, the
    other end being a port of that bridge.
  - Lab namespaces never get a default route. While the lab is present the root
    namespace carries an C(unreachable) route for the lab subnet, so nothing outside a
    lab namespace can send to it.
  - With O(state=absent) every process still running in a lab namespace (VMs, sshd
    sessions, probes) is stopped by its pid, then the namespaces and the route go.
  - Idempotent both ways. A host NIC that has been enslaved to a bridge (by the
    C(vm_network) role) counts as addressed when its bridge holds the address.
version_added: "0.1.0"
author: qmigrate developers
options:
  state:
    description: Whether the lab should exist.
    type: str
    choices: [present, absent]
    default: present
  hosts:
    description: Lab host namespaces and the address (with prefix) of each one's NIC.
    type: dict
    required: true
  subnet:
    description:
      - The lab subnet; every host address must lie inside it. It must be a private IPv4
        network, and its C(unreachable) route in the root namespace is added before
        anything else.
    type: str
    required: true
  switch:
    description: Name of the namespace that plays the experiment switch.
    type: str
    default: lablan
  bridge:
    description: Name of the bridge inside the switch namespace.
    type: str
    default: lan
  nic:
    description: Name of each host's experiment NIC (Cloudlab's xl170 name by default).
    type: str
    default: ens1f0
  stop_timeout:
    description: Seconds to wait for processes to exit after SIGTERM before SIGKILL.
    type: float
    default: 10
notes:
  - Needs root and iproute2. Supports check mode.
"""

EXAMPLES = r"""
- name: Build the lab
  lab_netns:
    hosts:
      labsrc: 10.10.1.1/24
      labdst: 10.10.1.2/24
      labclient: 10.10.1.3/24
    subnet: 10.10.1.0/24

- name: Remove the lab and stop everything running in it
  lab_netns:
    state: absent
    hosts: {labsrc: 10.10.1.1/24, labdst: 10.10.1.2/24, labclient: 10.10.1.3/24}
    subnet: 10.10.1.0/24
"""

RETURN = r"""
actions:
  description: The iproute2 commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["ip netns add labsrc", "ip route add unreachable 10.10.1.0/24"]
stopped_pids:
  description: Processes stopped in lab namespaces (state=absent).
  returned: always
  type: list
  elements: int
  sample: [4242]
"""

import contextlib
import ipaddress
import json
import os
import signal

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.process import wait_exited

# The only networks the lab may take: RFC 1918's private ones.
RFC1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


class Lab:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.actions: list[str] = []
        self.stopped: list[int] = []

    # -- helpers -------------------------------------------------------------
    def ip(self, *args: str, check: bool = True) -> str:
        rc, out, err = self.module.run_command(["ip", *args])
        if check and rc != 0:
            self.module.fail_json(
                msg="'ip {}' failed: {}".format(" ".join(args), err.strip() or out.strip()),
                actions=self.actions,
            )
        return out

    def ip_json(self, *args: str) -> list[dict]:
        out = self.ip("-j", *args)
        return json.loads(out) if out.strip() else []

    def change(self, *args: str) -> None:
        self.actions.append("ip " + " ".join(args))
        if not self.module.check_mode:
            self.ip(*args)

    def namespaces(self) -> set[str]:
        return {ns["name"] for ns in self.ip_json("netns", "list")}

    def link(self, ns: str | None, name: str) -> dict | None:
        prefix = ["-n", ns] if ns else []
        for link in self.ip_json(*prefix, "link", "show"):
            if link.get("ifname") == name:
                return link
        return None

    def addresses(self, ns: str, dev: str) -> set[str]:
        found = set()
        for link in self.ip_json("-n", ns, "addr", "show", "dev", dev):
            for a in link.get("addr_info", []):
                found.add("{}/{}".format(a["local"], a["prefixlen"]))
        return found

    # -- present -------------------------------------------------------------
    def validate(self) -> None:
        try:
            net = ipaddress.ip_network(self.p["subnet"], strict=False)
        except ValueError as exc:
            self.module.fail_json(
                msg="subnet: {!r} is not a network: {}".format(self.p["subnet"], exc)
            )
        if net.version != 4 or not any(net.subnet_of(ipaddress.ip_network(n)) for n in RFC1918):
            self.module.fail_json(
                msg=f"subnet: {net} is not a private IPv4 network (10.0.0.0/8, 172.16.0.0/12, "
                "192.168.0.0/16): the lab must never take addresses routed elsewhere"
            )
        for host, cidr in self.p["hosts"].items():
            try:
                iface = ipaddress.ip_interface(cidr)
            except ValueError as exc:
                self.module.fail_json(msg=f"hosts.{host}: {cidr!r} is not an address: {exc}")
            if iface.ip not in net or "/" not in str(cidr):
                self.module.fail_json(
                    msg=f"hosts.{host}: {cidr} must be an address/prefix inside {net}"
                )
            if len(host) > 15:
                self.module.fail_json(
                    msg=f"hosts.{host}: a lab host name is also an interface "
                    "name and must be at most 15 characters"
                )

    def present(self) -> None:
        self.validate()
        # The root namespace's route first: from the moment a lab address exists, nothing
        # outside the lab's namespaces can send to it.
        unreachable = str(ipaddress.ip_network(self.p["subnet"], strict=False))
        routes = self.ip_json("route", "show", "type", "unreachable")
        if not any(r.get("dst") == unreachable for r in routes):
            self.change("route", "add", "unreachable", unreachable)
        sw, br = self.p["switch"], self.p["bridge"]
        existing = self.namespaces()
        for ns in [sw, *self.p["hosts"]]:
            if ns not in existing:
                self.change("netns", "add", ns)
            if ns not in existing or "UP" not in (self.link(ns, "lo") or {}).get("flags", []):
                self.change("-n", ns, "link", "set", "lo", "up")

        if sw not in existing or self.link(sw, br) is None:
            self.change(
                "-n",
                sw,
                "link",
                "add",
                br,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "stp_state",
                "0",
            )
        if sw not in existing or "UP" not in (self.link(sw, br) or {}).get("flags", []):
            self.change("-n", sw, "link", "set", br, "up")

        for host, cidr in self.p["hosts"].items():
            self.host_present(host, cidr, host not in existing)

    def host_present(self, host: str, cidr: str, new_ns: bool) -> None:
        sw, br, nic = self.p["switch"], self.p["bridge"], self.p["nic"]
        # In check mode a namespace that does not exist yet cannot be inspected.
        link = None if new_ns else self.link(host, nic)
        if link is None:
            self.change(
                "link", "add", nic, "netns", host, "type", "veth", "peer", "name", host, "netns", sw
            )
        port = None if link is None else self.link(sw, host)
        if port is None or port.get("master") != br or "UP" not in port.get("flags", []):
            self.change("-n", sw, "link", "set", host, "master", br, "up")
        if link is None or "UP" not in link.get("flags", []):
            self.change("-n", host, "link", "set", nic, "up")

        # vm_network moves the address to the bridge that enslaves the NIC.
        holder = nic if link is None or not link.get("master") else link["master"]
        have = set() if link is None else self.addresses(host, holder)
        want = str(ipaddress.ip_interface(cidr))
        if want not in have:
            self.change("-n", host, "addr", "add", want, "dev", holder)

        if not new_ns:
            for route in self.ip_json("-n", host, "route", "show", "default"):
                self.change(
                    "-n",
                    host,
                    "route",
                    "del",
                    "default",
                    *(["via", route["gateway"]] if "gateway" in route else []),
                )

    # -- absent --------------------------------------------------------------
    def stop_processes(self, namespaces: list[str]) -> None:
        pids: list[int] = []
        for ns in namespaces:
            out = self.ip("netns", "pids", ns)
            pids.extend(int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid())
        if not pids or self.module.check_mode:
            self.stopped = pids
            return
        for pid in pids:
            self._signal(pid, signal.SIGTERM)
        alive = wait_exited(pids, self.p["stop_timeout"], interval=0.1)
        for pid in alive:
            self._signal(pid, signal.SIGKILL)
        self.stopped = pids

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def absent(self) -> None:
        existing = self.namespaces()
        ours = [ns for ns in [self.p["switch"], *self.p["hosts"]] if ns in existing]
        self.stop_processes(ours)
        for ns in ours:
            self.change("netns", "del", ns)
        net = str(ipaddress.ip_network(self.p["subnet"], strict=False))
        for route in self.ip_json("route", "show", "type", "unreachable"):
            if route.get("dst") == net:
                self.change("route", "del", "unreachable", net)

    def run(self) -> None:
        if self.p["state"] == "present":
            self.present()
        else:
            self.absent()
        self.module.exit_json(
            changed=bool(self.actions or self.stopped),
            actions=self.actions,
            stopped_pids=self.stopped,
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            hosts=dict(type="dict", required=True),
            subnet=dict(type="str", required=True),
            switch=dict(type="str", default="lablan"),
            bridge=dict(type="str", default="lan"),
            nic=dict(type="str", default="ens1f0"),
            stop_timeout=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    Lab(module).run()


if __name__ == "__main__":
    main()
