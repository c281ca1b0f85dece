"""The study's settings (roles/qmigrate's defaults) as the Python side reads them: the API's
lab status and progress, and the bench, find the VMs' runtime files where the roles put
them."""

from __future__ import annotations

import yaml

from qmigrate.runner import Project
from tests import ROOT


def test_the_python_side_reads_the_settings_every_play_loads():
    project = Project.locate(ROOT)
    wiring = yaml.safe_load((ROOT / "playbooks" / "vars" / "study.yml").read_text())

    assert project.study_setting("qmigrate_runtime_dir") == "/run/qmigrate"
    assert project.study_setting("qmigrate_vm_name") == "vm0"
    for role in ("vm", "migration", "lab"):
        assert wiring[f"{role}_runtime_dir"] == "{{ qmigrate_runtime_dir }}"
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        # A role run alone (its molecule scenario) uses the same place.
        assert defaults[f"{role}_runtime_dir"] == project.study_setting("qmigrate_runtime_dir")
