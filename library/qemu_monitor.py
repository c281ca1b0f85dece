#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qemu_monitor
short_description: Run one command on a QEMU monitor socket (QMP or HMP)
description:
  - Sends one command to a VM's monitor socket and returns the answer. The protocol is
    detected from the socket, so the seed's bare C(-monitor unix:...) socket works too.
  - Over QMP, O(command) is a QMP command name with optional O(arguments); over HMP it is
    a command line such as C(info status).
  - Query commands (QMP C(query-*), HMP C(info ...)) change nothing and run in check
    mode; any other command reports C(changed=true) and is skipped in check mode.
  - The VM's run state (C(query-status)) is always returned too.
version_added: "0.1.0"
author: qmigrate developers
options:
  socket:
    description: The monitor socket.
    type: path
    required: true
  command:
    description: A QMP command name, or an HMP command line for an HMP socket.
    type: str
    default: query-status
  arguments:
    description: QMP arguments.
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the socket and for the answer.
    type: float
    default: 10
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Read the VM's state
  qemu_monitor:
    socket: /run/qmigrate/labdst/vm0/qmp.sock
  register: vm

- name: Ask the seed's monitor how the migration went
  qemu_monitor:
    socket: /run/qmigrate/labsrc/vm0/monitor.sock
    command: info migrate
"""

RETURN = r"""
result:
  description: The QMP return value, or the HMP output text.
  returned: success
  type: raw
  sample: {status: running, running: true}
vm_status:
  description: The VM's run state (running, inmigrate, postmigrate, paused, ...).
  returned: success
  type: str
  sample: running
protocol:
  description: qmp or hmp.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.migration import QMPError, QMPMonitor, connect


def is_query(command: str) -> bool:
    return command.startswith("query-") or command.split()[0] == "info"


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", required=True),
            command=dict(type="str", default="query-status"),
            arguments=dict(type="dict", default={}),
            timeout=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    query = is_query(p["command"])
    try:
        mon = connect(p["socket"], p["timeout"])
    except QMPError as exc:
        module.fail_json(msg=f"cannot reach the monitor at {p['socket']}: {exc}")
    try:
        if module.check_mode and not query:
            module.exit_json(changed=True, vm_status=mon.status(), protocol=mon.protocol)
        if isinstance(mon, QMPMonitor):
            result = mon.run(p["command"], p["arguments"] or None)
        else:
            if p["arguments"]:
                module.fail_json(
                    msg=f"arguments: {p['socket']} is an HMP monitor, which "
                    "takes a command line, not QMP arguments"
                )
            result = mon.run(p["command"])
        module.exit_json(
            changed=not query, result=result, vm_status=mon.status(), protocol=mon.protocol
        )
    except QMPError as exc:
        module.fail_json(msg=f"monitor {p['socket']}: {p['command']!r} failed: {exc}")
    finally:
        mon.close()


if __name__ == "__main__":
    main()
