"""The Python API's own logic (src/qmigrate/api.py, results.py), without Ansible runs:
extra vars from its options, and a result read from a run record."""

from __future__ import annotations

import pytest

from qmigrate import api
from qmigrate.errors import BadInput
from qmigrate.results import MigrationResult
from tests.unit.qmigrate.records import RUN_ID, record


def test_migration_vars_map_the_options_and_keep_other_extra_vars():
    extravars = api.migration_vars(
        reverse=True,
        max_bandwidth=20_000_000,
        downtime_limit=100,
        capabilities={"multifd": True},
        parameters={"multifd-channels": 4},
        postcopy=True,
        timeout=30.0,
        extra_vars={"migration_vm": "vm1", "migration_max_bandwidth": 20_000_000},
    )

    assert extravars == {
        "migration_vm": "vm1",
        "qmigrate_reverse": True,
        "migration_max_bandwidth": 20_000_000,
        "migration_downtime_limit": 100,
        "migration_capabilities": {"multifd": True},
        "migration_parameters": {"multifd-channels": 4},
        "migration_postcopy": True,
        "migration_timeout": 30.0,
    }


def test_migration_vars_leave_unset_options_to_the_extra_vars():
    extravars = api.migration_vars(extra_vars={"qmigrate_reverse": True})

    assert extravars == {"qmigrate_reverse": True}


def test_an_option_contradicting_the_extra_vars_is_bad_input():
    with pytest.raises(BadInput) as caught:
        api.migration_vars(max_bandwidth=1, extra_vars={"migration_max_bandwidth": 2})

    assert caught.value.variables == ("migration_max_bandwidth",)


def test_migration_result_from_a_record(tmp_path):
    result = MigrationResult.from_record(record(), tmp_path / "run.json")

    assert (result.run_id, result.status, result.source, result.destination) == (
        RUN_ID,
        "completed",
        "labsrc",
        "labdst",
    )
    assert (result.total_time_ms, result.downtime_ms, result.setup_time_ms) == (474, 37, 1)
    assert (result.transferred_bytes, result.dirty_sync_count) == (110140115, 3)
    assert result.verified is True  # guest_answers_ping: None is "not checked"
    assert result.to_dict()["record_path"] == str(tmp_path / "run.json")


def test_playbooks_run_with_the_projects_screen_output_whatever_the_environment(monkeypatch):
    """ansible-runner's events come from the screen output it wraps: a run started under
    another ansible-playbook (campaign.yml) or a test's JSON output must not inherit it."""
    from qmigrate.runner import Project
    from tests import ROOT

    monkeypatch.setenv("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")

    env = Project.locate(ROOT).envvars()

    assert env["ANSIBLE_STDOUT_CALLBACK"] == "qmigrate"
