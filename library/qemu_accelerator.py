#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qemu_accelerator
short_description: Decide which QEMU accelerator a host can use
description:
  - Decides between KVM and TCG (QEMU's software emulation) for this host.
  - KVM counts as usable only when the CPU advertises hardware virtualisation
    (C(vmx) or C(svm) in C(/proc/cpuinfo)) and C(/dev/kvm) opens for reading and writing.
  - With O(requested=auto) the module picks KVM when usable, else TCG. With
    O(requested=kvm) it fails, saying why, when KVM is not usable. O(requested=tcg)
    always gives TCG.
  - Reads only; never changes the host.
version_added: "0.1.0"
author: qmigrate developers
options:
  requested:
    description: The accelerator asked for.
    type: str
    choices: [auto, kvm, tcg]
    default: auto
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Decide the accelerator
  qemu_accelerator:
    requested: auto
  register: accel

- name: Show it
  ansible.builtin.debug:
    msg: "QEMU will use {{ accel.accelerator }} ({{ accel.reason }})"
"""

RETURN = r"""
accelerator:
  description: The accelerator to use.
  returned: success
  type: str
  sample: tcg
kvm_usable:
  description: Whether KVM could be used on this host.
  returned: always
  type: bool
  sample: false
reason:
  description: Why KVM is or is not usable.
  returned: always
  type: str
  sample: the CPU does not advertise vmx or svm
"""

import os

from ansible.module_utils.basic import AnsibleModule

CPUINFO = "/proc/cpuinfo"
KVM_DEVICE = "/dev/kvm"


def cpu_virt_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return {"vmx", "svm"} & set(line.split(":", 1)[1].split())
    return set()


def kvm_status() -> tuple[bool, str]:
    try:
        with open(CPUINFO) as f:
            flags = cpu_virt_flags(f.read())
    except OSError as exc:
        return False, f"cannot read {CPUINFO}: {exc}"
    if not flags:
        return False, "the CPU does not advertise vmx or svm"
    try:
        os.close(os.open(KVM_DEVICE, os.O_RDWR))
    except OSError as exc:
        return False, f"{KVM_DEVICE} does not open: {exc.strerror}"
    return True, "the CPU advertises {} and {} opens".format("/".join(sorted(flags)), KVM_DEVICE)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            requested=dict(type="str", choices=["auto", "kvm", "tcg"], default="auto"),
        ),
        supports_check_mode=True,
    )
    requested = module.params["requested"]
    usable, reason = kvm_status()
    if requested == "kvm" and not usable:
        module.fail_json(
            msg=f"qemu_accelerator: kvm was requested but KVM is not usable here: {reason}",
            kvm_usable=False,
            reason=reason,
        )
    accelerator = ("kvm" if usable else "tcg") if requested == "auto" else requested
    module.exit_json(changed=False, accelerator=accelerator, kvm_usable=usable, reason=reason)


if __name__ == "__main__":
    main()
