"""The run's record on the controller (action_plugins/qmigrate_record.py): run.json and
the latest link written atomically, the record kept as a fact and published to the
playbook's caller in the same task, and bad arguments refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar

from action_plugins.qmigrate_record import ActionModule, published, write_record

RECORD = {
    "run_id": "r1",
    "status": "completed",
    "timeline": [{"t": 0.1}],
    "events": [{"event": "STOP"}],
    "verification": {"migration_completed": True},
}


def run(args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """The action as a playbook task would run it, on a real Task and local connection."""
    task = Task()
    task.action = "qmigrate_record"
    task.args = args
    task.check_mode = check_mode
    context = PlayContext()
    loader = DataLoader()
    action = ActionModule(
        task,
        connection_loader.get("local", context, "/dev/null"),
        context,
        loader,
        Templar(loader=loader),
        None,
    )
    return action.run(task_vars={})


def test_writes_run_json_and_points_latest_at_it(tmp_path):
    dest = write_record(str(tmp_path), "r1", RECORD, latest=True)

    assert json.loads(Path(dest).read_text()) == RECORD
    assert (tmp_path / "latest").resolve() == (tmp_path / "r1").resolve()
    assert not [p for p in (tmp_path / "r1").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", ".hidden", "r..1"])
def test_an_unsafe_run_id_is_refused(tmp_path, run_id):
    with pytest.raises(ValueError, match="not a safe directory name"):
        write_record(str(tmp_path), run_id, RECORD, latest=False)


def test_published_leaves_out_the_series(tmp_path):
    data = published(RECORD, str(tmp_path / "r1" / "run.json"))

    assert data["qmigrate_run"] == {k: RECORD[k] for k in ("run_id", "status", "verification")}
    assert data["qmigrate_run_json"] == str((tmp_path / "r1" / "run.json").resolve())


def test_one_task_writes_keeps_the_fact_and_publishes(tmp_path):
    result = run(
        {
            "record": RECORD,
            "results_dir": str(tmp_path),
            "fact": "migration_result",
            "publish": "true",
        }
    )

    assert result["changed"] and result["dest"] == str(tmp_path / "r1" / "run.json")
    assert result["ansible_facts"] == {"migration_result": RECORD}
    stats = result["ansible_stats"]
    assert stats["per_host"] is False and stats["aggregate"] is False
    assert "timeline" not in stats["data"]["qmigrate_run"]
    assert json.loads((tmp_path / "r1" / "run.json").read_text())["status"] == "completed"


def test_an_interrupted_record_is_not_published(tmp_path):
    result = run({"record": RECORD, "results_dir": str(tmp_path), "publish": False})

    assert "ansible_stats" not in result and "ansible_facts" not in result
    assert (tmp_path / "r1" / "run.json").exists()


def test_check_mode_writes_nothing(tmp_path):
    result = run({"record": RECORD, "results_dir": str(tmp_path), "publish": True}, True)

    assert result["changed"] and "ansible_stats" not in result
    assert not (tmp_path / "r1").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"record": "x"}, "record must be a mapping"),
        ({"record": RECORD, "fact": "not a name"}, "is not a variable name"),
        ({"record": RECORD, "run_id": "../up"}, "not a safe directory name"),
        ({"record": RECORD, "publish": "sometimes"}, "must be booleans"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, args, message):
    with pytest.raises(AnsibleActionFail, match=message):
        run({"results_dir": str(tmp_path), **args})
    assert not (tmp_path / "r1").exists()
