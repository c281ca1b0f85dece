# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write a run's record on the controller: <results_dir>/<run_id>/run.json and the latest
link, in the controller's own process (no module is sent, no file transferred), each
write atomic (a reader sees the old record or the new one, never half of one); and in the
same task, the record as a fact and as the run's published stats, which a play would
otherwise spend a task on each. Documentation: library/qmigrate_record.py."""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


def write_record(results_dir: str, run_id: str, record: dict[str, Any], latest: bool) -> str:
    """Write RECORD as RESULTS_DIR/RUN_ID/run.json (and point RESULTS_DIR/latest at it
    when LATEST); return run.json's path."""
    if not RUN_ID.match(run_id) or ".." in run_id:
        raise ValueError(f"run id {run_id!r} is not a safe directory name")
    run_dir = os.path.join(results_dir, run_id)
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    path = os.path.join(run_dir, "run.json")
    fd, tmp = tempfile.mkstemp(prefix=".run.json.", dir=run_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if latest:
        link = os.path.join(results_dir, "latest")
        tmp_link = os.path.join(results_dir, f".latest.{os.getpid()}")
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        os.symlink(run_id, tmp_link)
        os.replace(tmp_link, link)
    return path


# What is published to the playbook's caller leaves out the record's long series.
UNPUBLISHED = ("timeline", "events")
FACT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def published(record: dict[str, Any], dest: str) -> dict[str, Any]:
    """The stats a run publishes (ansible-runner's artifact_data; src/qmigrate/events.py
    reads them): the record without its series, and where run.json is."""
    return {
        "qmigrate_run": {k: v for k, v in record.items() if k not in UNPUBLISHED},
        "qmigrate_run_json": os.path.realpath(dest),
    }


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("record", "results_dir", "run_id", "latest", "fact", "publish"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        record = args.get("record")
        if not isinstance(record, dict):
            raise AnsibleActionFail("record must be a mapping (the run's record)")
        results_dir = os.path.abspath(str(args.get("results_dir") or "results"))
        run_id = str(args.get("run_id") or record.get("run_id") or "")
        dest = os.path.join(results_dir, run_id, "run.json")
        try:
            latest = boolean(args.get("latest", True), strict=True)
            publish = boolean(args.get("publish", False), strict=True)
        except TypeError as exc:
            raise AnsibleActionFail(f"latest and publish must be booleans: {exc}") from exc
        fact = args.get("fact")
        if fact is not None and not FACT.match(str(fact)):
            raise AnsibleActionFail(f"fact: {fact!r} is not a variable name")
        if fact:
            result["ansible_facts"] = {str(fact): record}
        if self._task.check_mode:
            result.update(changed=True, dest=dest)
            return result
        try:
            dest = write_record(results_dir, run_id, record, latest)
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail(f"cannot write the run's record {dest}: {exc}") from exc
        result.update(changed=True, dest=dest)
        if publish:
            result["ansible_stats"] = {
                "data": published(record, dest),
                "per_host": False,
                "aggregate": False,
            }
        return result
