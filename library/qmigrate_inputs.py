#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qmigrate_inputs
short_description: Check every input of a qmigrate run before any host is touched
description:
  - Checks the variables of every inventory host (as the inventory and the extra vars make
    them) against the roles' argument specs (type, choices; C("4000000") is a number and
    C("off") is false, as Ansible users expect) and against what a spec cannot say, and
    fails naming each bad variable. Runs in the controller's process as an action plugin
    (C(action_plugins/qmigrate_inputs.py)), so nothing is sent to any host.
  - Ranges - ports 1-65535, positive finite timeouts and poll intervals, counts
    and sizes; names that become file names, QEMU ids or options (VM, run id, group)
    from a safe alphabet (no C(/), C(..), commas or spaces), interface names within the
    kernel's 15 characters; paths QEMU reads inside its options without commas.
  - Addresses - a guest address that is a host's address or its network's address is
    refused; a MAC must be unicast; C(lab_subnet) must be a private network.
  - The migration URI - C(tcp:) to the destination's experiment address or C(unix:) in the
    destination VM's runtime directory (same-host migrations only); any other scheme
    (C(exec:) runs a shell command as root on both hypervisors) only with
    C(migration_allow_any_uri=true).
  - Capabilities and parameters - names known to some QEMU version (the running QEMU's
    own list is checked by M(qemu_migrate) before it changes anything) and values of the
    right type and range.
  - Several VM pairs - with C(qmigrate_vm_count) above 1, variables that are one per pair
    (a run id, a URI, a port given as an extra var) are refused; variables the playbooks
    set from the study's (C(migration_destination), C(vm_name), ...) are refused as extra
    vars, which would override that wiring.
  - Extra vars with a qmigrate role's prefix that no role knows are reported as warnings
    (a likely typo).
version_added: "0.2.0"
author: qmigrate developers
options: {}
notes:
  - Supports check mode (it changes nothing in any mode).
  - The checks are the same whichever way the variables arrive; C(playbooks/validate.yml)
    runs it first in every playbook that acts on the study.
"""

EXAMPLES = r"""
- name: Check every input of the run
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check the variables of every host and the extra vars
      qmigrate_inputs:
"""

RETURN = r"""
invalid:
  description: Each refused variable, why, and the hosts it was refused on (empty for all).
  returned: always
  type: list
  elements: dict
  sample:
    - variable: migration_port
      problem: 70000 is out of range (at least 1, at most 65535)
      hosts: []
checked:
  description: How many variables the checks know.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.fail_json(
        msg="qmigrate_inputs runs on the controller as an action plugin "
        "(action_plugins/qmigrate_inputs.py); this file only documents it"
    )


if __name__ == "__main__":
    main()
