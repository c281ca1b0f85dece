"""The modules a migration runs, built ahead into Ansible's per-run module cache
(callback_plugins/qmigrate_prebuild.py): a real ansible-playbook run's task uses that build
instead of making its own, and makes its own when the callback is told to build none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# A module of the hot path, after a pause that gives the child its head start (it builds
# in about a second even on a loaded machine); the VM does not exist, which qemu_vm's
# query reports without failing.
PLAYBOOK = """
- name: Use a module the callback builds
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Give the build a head start
      ansible.builtin.pause:
        seconds: 3
    - name: Ask after a VM that does not run
      qemu_vm:
        state: query
        pidfile: "{{ dir }}/vm.pid"
        qmp: "{{ dir }}/qmp.sock"
        timeout: 1
"""


def playbook_debug(tmp_path: Path, **env: str) -> str:
    """ansible-playbook's debug output for PLAYBOOK, run with the project's ansible.cfg."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    run = subprocess.run(
        [Path(sys.executable).parent / "ansible-playbook", str(playbook), "-e", f"dir={tmp_path}"],
        cwd=ROOT,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_DEBUG": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            **env,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


@pytest.mark.parametrize(
    ("env", "worker_builds"),
    [
        # a module that does not exist is passed over
        ({"QMIGRATE_PREBUILD_MODULES": "no_such_module,qemu_vm"}, False),
        ({"QMIGRATE_PREBUILD_MODULES": ""}, True),
    ],
    ids=["prebuilt", "turned-off"],
)
def test_a_task_uses_the_module_built_ahead(tmp_path, env, worker_builds):
    out = playbook_debug(tmp_path, **env)

    used = [line for line in out.splitlines() if "ansible.legacy.qemu_vm-" in line]
    assert used, out[-3000:]
    # Built once in the run, by the child (before the task) or by the task's worker.
    assert out.count("ANSIBALLZ: Creating module") == 1
    cached = any("ANSIBALLZ: using cached module" in line for line in used)
    assert cached is not worker_builds
