#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_bridge
short_description: Bridge a host's experiment NIC and the VMs' TAP devices
description:
  - Makes the bridge that lets a VM's TAP device share the host's experiment network,
    so the guest can hold its own address on that network (the seed's "public IP").
  - When O(nic) is given and not yet a port of the bridge, the NIC is enslaved and its
    addresses and non-kernel routes move to the bridge in one C(ip -batch) call, so a
    connection over that NIC is not cut. The bridge takes the NIC's MAC address, so
    neighbours' ARP caches stay right.
  - TAP devices are persistent (owned by no process), so QEMU attaches to them with
    C(script=no,downscript=no) as the seed does.
  - O(state=absent) removes the TAP devices, gives the NIC its addresses back and removes
    the bridge.
version_added: "0.1.0"
author: qmigrate developers
options:
  bridge:
    description: Name of the bridge.
    type: str
    default: br0
  nic:
    description: The experiment NIC to enslave. Omit for a bridge with TAP devices only.
    type: str
  taps:
    description: TAP devices to create as ports of the bridge.
    type: list
    elements: str
    default: [tap0]
  state:
    description: Whether the bridge should exist.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Needs root and iproute2. Supports check mode.
"""

EXAMPLES = r"""
- name: Bridge the experiment NIC and tap0
  vm_bridge:
    bridge: br0
    nic: ens1f0
    taps: [tap0]
"""

RETURN = r"""
actions:
  description: The iproute2 commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["link add br0 type bridge forward_delay 0 stp_state 0", "link set ens1f0 master br0"]
addresses:
  description: The bridge's addresses afterwards (predicted in check mode).
  returned: always
  type: list
  elements: str
  sample: ["10.10.1.1/24"]
"""

import json

from ansible.module_utils.basic import AnsibleModule


class Bridge:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.actions: list[str] = []

    def ip_json(self, *args: str) -> list[dict]:
        rc, out, err = self.module.run_command(["ip", "-j", *args])
        if rc != 0:
            self.module.fail_json(msg="'ip -j {}' failed: {}".format(" ".join(args), err.strip()))
        return json.loads(out) if out.strip() else []

    def link(self, name: str) -> dict | None:
        for link in self.ip_json("link", "show"):
            if link.get("ifname") == name:
                return link
        return None

    def addresses(self, dev: str) -> list[str]:
        found = []
        for link in self.ip_json("addr", "show", "dev", dev):
            for a in link.get("addr_info", []):
                if a.get("scope") == "global":
                    found.append("{}/{}".format(a["local"], a["prefixlen"]))
        return found

    def routes(self, dev: str) -> list[list[str]]:
        """Routes through DEV that the kernel would not recreate from an address."""
        moved = []
        for family in ("-4", "-6"):
            for r in self.ip_json(family, "route", "show", "dev", dev):
                if r.get("protocol") == "kernel" or r.get("dst", "").startswith("fe80"):
                    continue
                spec = [family, "route", "replace", r["dst"]]
                for key, word in (("gateway", "via"), ("metric", "metric"), ("prefsrc", "src")):
                    if key in r:
                        spec += [word, str(r[key])]
                moved.append(spec)
        return moved

    def apply(self, commands: list[list[str]]) -> None:
        """Run COMMANDS in one `ip -batch` so the change is as short as iproute2 allows."""
        if not commands:
            return
        self.actions.extend(" ".join(c) for c in commands)
        if self.module.check_mode:
            return
        batch = "\n".join(" ".join(c) for c in commands) + "\n"
        rc, out, err = self.module.run_command(["ip", "-batch", "-"], data=batch)
        if rc != 0:
            self.module.fail_json(
                msg="bridge {}: iproute2 batch failed: {}".format(
                    self.p["bridge"], err.strip() or out.strip()
                ),
                actions=self.actions,
            )

    def present(self) -> list[str]:
        br, nic = self.p["bridge"], self.p["nic"]
        nic_link = None
        if nic:
            nic_link = self.link(nic)
            if nic_link is None:
                self.module.fail_json(msg=f"nic: {nic} does not exist on this host")
            master = nic_link.get("master")
            if master and master != br:
                self.module.fail_json(msg=f"nic: {nic} is already a port of {master}, not of {br}")

        bridge = self.link(br)
        steps: list[list[str]] = []
        if bridge is None:
            steps.append(
                ["link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"]
            )
            if nic_link is not None:
                steps.append(["link", "set", br, "address", nic_link["address"]])
        if bridge is None or "UP" not in bridge.get("flags", []):
            steps.append(["link", "set", br, "up"])
        addresses = [] if bridge is None else self.addresses(br)

        if nic_link is not None and nic_link.get("master") != br:
            moving = self.addresses(nic)
            steps.append(["link", "set", nic, "master", br])
            for a in moving:
                steps += [["addr", "del", a, "dev", nic], ["addr", "add", a, "dev", br]]
            steps += [[*r, "dev", br] for r in self.routes(nic)]
            addresses += moving
        if nic_link is not None and "UP" not in nic_link.get("flags", []):
            steps.append(["link", "set", nic, "up"])

        for tap in self.p["taps"]:
            link = self.link(tap)
            if link is None:
                steps.append(["tuntap", "add", "dev", tap, "mode", "tap"])
            if link is None or link.get("master") != br or "UP" not in link.get("flags", []):
                steps.append(["link", "set", tap, "master", br, "up"])
        self.apply(steps)
        return addresses

    def absent(self) -> list[str]:
        br, nic = self.p["bridge"], self.p["nic"]
        steps: list[list[str]] = []
        for tap in self.p["taps"]:
            if self.link(tap) is not None:
                steps.append(["tuntap", "del", "dev", tap, "mode", "tap"])
        bridge = self.link(br)
        if bridge is not None:
            nic_link = self.link(nic) if nic else None
            if nic_link is not None and nic_link.get("master") == br:
                moving = self.addresses(br)
                steps.append(["link", "set", nic, "nomaster"])
                for a in moving:
                    steps += [["addr", "del", a, "dev", br], ["addr", "add", a, "dev", nic]]
                steps += [[*r, "dev", nic] for r in self.routes(br)]
            steps.append(["link", "del", br])
        self.apply(steps)
        return []

    def run(self) -> None:
        addresses = self.present() if self.p["state"] == "present" else self.absent()
        self.module.exit_json(changed=bool(self.actions), actions=self.actions, addresses=addresses)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            bridge=dict(type="str", default="br0"),
            nic=dict(type="str"),
            taps=dict(type="list", elements="str", default=["tap0"]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    Bridge(module).run()


if __name__ == "__main__":
    main()
