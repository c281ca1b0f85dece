#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qmigrate_record
short_description: Write a migration run's record on the controller
description:
  - Writes O(record) as C(<results_dir>/<run_id>/run.json) and points
    C(<results_dir>/latest) at it. Runs in the controller's process as an action plugin
    (C(action_plugins/qmigrate_record.py)), so nothing is sent to any host; each write is
    atomic, so a reader sees the old record or the new one, never half of one.
  - The migration role writes a run's record twice, first saying C(interrupted) just
    before the migration starts (so that a run whose controller is stopped midway leaves
    a record saying so), then the outcome.
version_added: "0.2.0"
author: qmigrate developers
options:
  record:
    description: The record (run.json's content).
    type: dict
    required: true
  results_dir:
    description: Directory of the run records (relative paths are from the current directory).
    type: path
    default: results
  run_id:
    description: The run's directory name (letters, digits, C(_.@-)); default O(record)'s C(run_id).
    type: str
  latest:
    description: Point C(<results_dir>/latest) at this run.
    type: bool
    default: true
  fact:
    description:
      - Also set the record as this fact of the host (the migration role's
        C(migration_result)), in the same task.
    type: str
  publish:
    description:
      - Also publish the run to the playbook's caller, as C(set_stats) would (not per
        host, not aggregated), as C(qmigrate_run), the record without its C(timeline)
        and C(events), and C(qmigrate_run_json), run.json's real path. ansible-runner
        returns them as the run's artifact data. Nothing is published in check mode.
    type: bool
    default: false
notes:
  - Supports check mode, in which it writes nothing and reports where it would.
"""

EXAMPLES = r"""
- name: Write run.json
  qmigrate_record:
    record: "{{ __migration_record }}"
    results_dir: "{{ migration_results_dir }}"

- name: Write run.json, keep the record as a fact and publish it to the caller
  qmigrate_record:
    record: "{{ __migration_record }}"
    results_dir: "{{ migration_results_dir }}"
    fact: migration_result
    publish: true
"""

RETURN = r"""
dest:
  description: The path of run.json.
  returned: always
  type: str
  sample: /work/qmigrate/results/20261201T120000Z-vm0-labsrc-to-labdst/run.json
ansible_facts:
  description: The record as the fact named by O(fact).
  returned: when O(fact) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            record=dict(type="dict", required=True),
            results_dir=dict(type="path", default="results"),
            run_id=dict(type="str"),
            latest=dict(type="bool", default=True),
            fact=dict(type="str"),
            publish=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    module.fail_json(
        msg="qmigrate_record runs on the controller as an action plugin "
        "(action_plugins/qmigrate_record.py); this file only documents it"
    )


if __name__ == "__main__":
    main()
