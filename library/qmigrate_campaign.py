#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qmigrate_campaign
short_description: Run a campaign of migrations from its file, on the controller
description:
  - Reads and checks a campaign file (docs/campaigns.md), failing with every problem
    named by its place in the file before anything runs, then runs its plan with the
    same runner as C(qmigrate campaign run), one C(migrate.yml) per run, each recorded
    as any migration is, into C(results/campaigns/<name>-<stamp>/) or O(into), with
    C(campaign.json), C(runs.csv) and C(summary.md) beside the runs. A line is shown per
    run.
  - Runs in the controller's process as an action plugin
    (C(action_plugins/qmigrate_campaign.py)); needs qmigrate's Python package, which
    the project's C(.venv) has.
  - A failed run is recorded and the campaign goes on; the task then fails, saying how
    many runs did not complete. Given O(into) again, a campaign stopped midway is
    completed (runs with an outcome are skipped).
version_added: "0.3.0"
author: qmigrate developers
options:
  file:
    description: The campaign file (YAML); a relative path is looked for from the
      current directory, then from the playbook's.
    type: path
    required: true
  into:
    description: The campaign's directory, to resume it; default a new one.
    type: path
  results_dir:
    description: Where a new campaign's directory goes (under C(campaigns/)); default
      the project's C(results/).
    type: path
notes:
  - Supports check mode, in which it checks the file and lists the runs, running none.
"""

EXAMPLES = r"""
- name: Run the campaign
  qmigrate_campaign:
    file: campaigns/compare.yml

- name: Complete a campaign stopped midway
  qmigrate_campaign:
    file: campaigns/compare.yml
    into: results/campaigns/compare-20261202T060000Z
"""

RETURN = r"""
directory:
  description: The campaign's directory.
  returned: when it ran
  type: str
  sample: results/campaigns/compare-20261202T060000Z
completed:
  description: How many runs completed.
  returned: when it ran
  type: int
not_completed:
  description: How many runs failed or have no record.
  returned: when it ran
  type: int
summary:
  description: The path of summary.md.
  returned: when it ran
  type: str
runs:
  description: In check mode, the run ids it would run, in order.
  returned: in check mode
  type: list
  elements: str
problems:
  description: What is wrong with the campaign file, each named by its place.
  returned: when the file is refused
  type: list
  elements: str
"""
