#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: file_users
short_description: Tell which processes on this host have given files open
description:
  - Reads C(/proc/<pid>/fd) of every process on this host and reports those holding one
    of O(paths) open, with their command line, so that a disk image is never replaced
    under a running VM (a guest writing to a file that was renamed away loses its writes).
  - Read-only. Processes on other hosts are not seen, even where the file is on shared
    storage; run it on every host that may have it open.
version_added: "0.2.0"
author: qmigrate developers
options:
  paths:
    description: The files to look for (symbolic links are resolved).
    type: list
    elements: path
    required: true
notes:
  - Supports check mode. Needs root to see other users' processes.
"""

EXAMPLES = r"""
- name: Look for VMs using the seed's disk
  file_users:
    paths: [/proj/qmigrate-lab/bullseye.img]
  register: users
"""

RETURN = r"""
users:
  description: One entry per process and file it has open.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /proj/qmigrate-lab/bullseye.img
      pid: 4242
      cmdline: qemu-system-x86_64 -name vm0 ...
"""

import os

from ansible.module_utils.basic import AnsibleModule


def users_of(paths: list[str]) -> list[dict]:
    """The processes that have one of PATHS open, oldest pid first."""
    wanted = {os.path.realpath(p): p for p in paths}
    found = []
    for entry in sorted(os.listdir("/proc"), key=lambda name: (len(name), name)):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        held = set()
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in wanted:
                held.add(wanted[target])
        for path in sorted(held):
            found.append({"path": path, "pid": int(entry), "cmdline": cmdline(int(entry))})
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except OSError:
        return ""


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(paths=dict(type="list", elements="path", required=True)),
        supports_check_mode=True,
    )
    module.exit_json(changed=False, users=users_of(module.params["paths"]))


if __name__ == "__main__":
    main()
