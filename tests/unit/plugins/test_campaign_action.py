"""campaign.yml and its action (action_plugins/qmigrate_campaign.py), as far as they go
without the lab: a bad campaign file refused with its problems, and check mode listing
the runs and running none. tests/integration/test_campaign.py runs campaigns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import ROOT


def playbook(*extra: str) -> subprocess.CompletedProcess:
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        ["ansible-playbook", "campaign.yml", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def task_result(done: subprocess.CompletedProcess) -> dict:
    document = json.loads(done.stdout)
    (task,) = document["plays"][0]["tasks"]
    return task["hosts"]["localhost"]


def test_check_mode_lists_the_runs_and_runs_none(tmp_path):
    done = playbook("-e", "campaign=campaigns/compare.yml", "--check")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = task_result(done)
    assert result["runs"][:3] == ["idle-seed-001", "idle-defaults-001", "idle-multifd4-001"]
    assert len(result["runs"]) == 15 and result["changed"] is False
    assert "would run 15 migrations" in result["msg"]


def test_a_bad_campaign_file_fails_naming_each_problem(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("repetitions: 0\nmethods: {m: {postcopy: maybe}}\nguests: {g: {}}\n")

    done = playbook("-e", f"campaign={bad}")

    assert done.returncode == 2
    result = task_result(done)
    assert result["problems"] == [
        "repetitions: 0 is out of range (1 to 1000)",
        "methods.m.postcopy: 'maybe' is not true or false",
    ]
    assert "2 problem(s)" in result["msg"]
