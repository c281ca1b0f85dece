#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qemu_guest
short_description: Read a VM's run state and its guest's heartbeat on the serial console
description:
  - Asks the VM's monitor (QMP or HMP) for its run state, then reads the guest's serial
    console log, which the qmigrate guests write a heartbeat line to about every 100 ms.
  - When the VM runs, it waits up to O(timeout) seconds for the first heartbeat in the
    log and, with O(advance), for a later one, so that a caller can tell a guest that
    goes on (after a migration, on its destination) from one that stopped. It polls the
    file every O(poll_interval) seconds; a VM that does not run is reported at once.
  - One module run for what would otherwise be a status query and two reads of the log
    retried from the controller.
  - Read-only; runs in check mode.
version_added: "0.2.0"
author: qmigrate developers
options:
  socket:
    description: The VM's monitor socket (QMP or HMP).
    type: path
    required: true
  serial_log:
    description: The VM's serial console log (C(-serial file:...)).
    type: path
    required: true
  heartbeat:
    description:
      - A regular expression matching one whole heartbeat line; its first group is the
        counter.
    type: str
    default: 'qmigrate-heartbeat ([0-9]+) [0-9.]+\r?\n'
  advance:
    description: Also wait for a heartbeat after the first one in the log.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the first heartbeat, and again for a later one.
    type: float
    default: 60
  poll_interval:
    description: Seconds between two reads of the log.
    type: float
    default: 0.1
  head_bytes:
    description: How much of the log's beginning to return.
    type: int
    default: 65536
  tail_bytes:
    description: How much of the log's end to return.
    type: int
    default: 4096
  monitor_timeout:
    description: Seconds to wait for the monitor to connect and answer.
    type: float
    default: 10
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Check the migrated guest on its destination
  qemu_guest:
    socket: /run/qmigrate/labdst/vm0/qmp.sock
    serial_log: /run/qmigrate/labdst/vm0/serial.log
  register: guest
"""

RETURN = r"""
vm_status:
  description: The VM's run state (running, postmigrate, inmigrate, ...).
  returned: always
  type: str
  sample: running
head:
  description: The beginning of the serial log (up to O(head_bytes)).
  returned: always
  type: str
tail:
  description: The end of the serial log (up to O(tail_bytes)), read after the waits.
  returned: always
  type: str
first:
  description: The first heartbeat counter in RV(head), or null.
  returned: always
  type: int
latest:
  description: The last heartbeat counter in RV(tail), or null.
  returned: always
  type: int
waited:
  description: Seconds spent waiting for heartbeats.
  returned: always
  type: float
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.guest import HEARTBEAT, watch_heartbeat
from ansible.module_utils.migration import QMPError, connect


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", required=True),
            serial_log=dict(type="path", required=True),
            heartbeat=dict(type="str", default=HEARTBEAT),
            advance=dict(type="bool", default=True),
            timeout=dict(type="float", default=60),
            poll_interval=dict(type="float", default=0.1),
            head_bytes=dict(type="int", default=65536),
            tail_bytes=dict(type="int", default=4096),
            monitor_timeout=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        pattern = re.compile(p["heartbeat"])
    except re.error as exc:
        module.fail_json(msg=f"heartbeat: {p['heartbeat']!r} is not a regular expression: {exc}")
    try:
        monitor = connect(p["socket"], p["monitor_timeout"])
        try:
            status = monitor.status()
        finally:
            monitor.close()
    except QMPError as exc:
        module.fail_json(msg=f"cannot read the run state of the VM at {p['socket']}: {exc}")

    module.exit_json(
        changed=False,
        vm_status=status,
        **watch_heartbeat(
            p["serial_log"],
            pattern,
            running=status == "running",
            advance=p["advance"],
            timeout=p["timeout"],
            poll_interval=p["poll_interval"],
            head_bytes=p["head_bytes"],
            tail_bytes=p["tail_bytes"],
        ),
    )


if __name__ == "__main__":
    main()
