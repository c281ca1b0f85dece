# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a campaign from a playbook (campaign.yml): the campaign file checked, then its runs
by the same runner as `qmigrate campaign run` (src/qmigrate/campaign_runner.py), in the
controller's process, a line shown per run. Documentation: library/qmigrate_campaign.py."""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


def _located(path: str, playbook_dir: str) -> str:
    """PATH as given, or from the playbook's directory when it is not found as given."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    beside = os.path.join(playbook_dir, path)
    return beside if os.path.exists(beside) else path


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("file", "into", "results_dir"))

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        try:
            from qmigrate.campaign import CampaignError, load
            from qmigrate.campaign_runner import run_campaign
            from qmigrate.errors import QmigrateError
        except ImportError as exc:
            raise AnsibleActionFail(
                f"qmigrate's Python package cannot be imported here ({exc}): run "
                "ansible-playbook from the project's .venv (make setup)"
            ) from None
        args = self._task.args
        if not args.get("file"):
            raise AnsibleActionFail("file: the campaign file is required (-e campaign=FILE)")
        playbook_dir = str(task_vars.get("playbook_dir") or os.getcwd())
        path = _located(str(args["file"]), playbook_dir)
        try:
            campaign = load(path)
        except CampaignError as exc:
            return {**result, "failed": True, "msg": exc.message, "problems": exc.problems}
        runs = campaign.plan()
        if self._task.check_mode:
            return {
                **result,
                "changed": False,
                "msg": f"campaign {campaign.name} would run {len(runs)} migrations",
                "runs": [run.run_id for run in runs],
            }
        sources = task_vars.get("ansible_inventory_sources") or []

        def show(progress: Any) -> None:
            took = f" ({progress.total_ms:.0f} ms)" if progress.total_ms is not None else ""
            display.display(
                f"campaign {campaign.name}: run {progress.done} of {progress.total}: "
                f"{progress.run.method} on {progress.run.guest}, repetition "
                f"{progress.run.rep}: {progress.outcome}{took}",
                stderr=True,  # beside the play's own output, which may be a document
            )

        try:
            outcome = run_campaign(
                campaign,
                into=args.get("into") or None,
                results_dir=args.get("results_dir") or None,
                project=playbook_dir,
                inventory=sources[0] if sources else None,
                on_progress=show,
            )
        except QmigrateError as exc:
            raise AnsibleActionFail(f"campaign {campaign.name} stopped: {exc}") from None
        result.update(
            changed=True,
            directory=str(outcome.directory),
            completed=outcome.completed,
            not_completed=outcome.not_completed,
            summary=str(outcome.directory / "summary.md"),
        )
        if outcome.not_completed:
            result["failed"] = True
            result["msg"] = (
                f"{outcome.not_completed} of {len(outcome.rows)} runs did not complete (each is "
                f"recorded): see {outcome.directory / 'summary.md'}"
            )
        else:
            result["msg"] = f"{outcome.completed} runs completed: {outcome.directory}"
        return result
