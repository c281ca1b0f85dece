"""Job events as ansible-runner hands them over (src/qmigrate/events.py): the run record
they carry, the failed task they report, and the exceptions those become."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmigrate.errors import BadInput, InfrastructureError, MigrationFailed, PlaybookFailed
from qmigrate.events import failure, named_variables, published_run, raise_for_failure
from tests.unit.qmigrate.records import RUN_ID, Events, published, record

PREFIXES = ("qmigrate", "migration", "lab", "vm", "qemu")


def fact_event(events: Events, rec: dict[str, Any]) -> Events:
    return events.ok(
        "Assemble the run's record",
        "labsrc",
        {"ansible_facts": {"migration_result": rec}},
        role="migration",
        task_action="ansible.builtin.set_fact",
    )


def raised(events: Events) -> PlaybookFailed:
    with pytest.raises(PlaybookFailed) as caught:
        raise_for_failure(
            events.items, playbook="migrate.yml", status="failed", rc=2, prefixes=PREFIXES
        )
    return caught.value


# -- reading runs from events ---------------------------------------------------------


def test_published_run_prefers_the_set_stats_data(tmp_path):
    path = tmp_path / RUN_ID / "run.json"
    events = fact_event(Events(), record(status="from-fact")).recap(
        artifact_data={"qmigrate_run": published(record()), "qmigrate_run_json": str(path)}
    )

    rec, where = published_run(events.items)

    assert rec["status"] == "completed"
    assert "timeline" not in rec
    assert where == path


def test_published_run_falls_back_to_the_record_fact_and_the_copy_dest():
    events = fact_event(Events(), record()).ok(
        "Write run.json",
        "labsrc",
        {"dest": f"/work/results/{RUN_ID}/run.json", "changed": True},
    )
    events.recap()

    rec, where = published_run(events.items)

    assert rec["run_id"] == RUN_ID
    assert rec["timeline"]
    assert where == Path(f"/work/results/{RUN_ID}/run.json")


def test_published_run_is_none_without_a_record():
    events = Events().ok("Connect to the host", "labsrc", {"ping": "pong"}).recap()

    assert published_run(events.items) is None


def test_failure_skips_rescued_failures():
    events = (
        Events()
        .failed("Migrate the VM and record its progress", "labsrc", {"msg": "inner"})
        .failed("Fail with the cause", "labsrc", {"msg": "Migration of vm0 failed: inner"})
        .recap(failures={"labsrc": 1}, rescued={"labsrc": 1})
    )

    found = failure(events.items)

    assert found is not None
    assert (found.task, found.host) == ("Fail with the cause", "labsrc")
    assert found.message == "Migration of vm0 failed: inner"


def test_failure_is_the_earliest_of_the_failed_hosts_and_ignores_the_rest():
    events = (
        Events()
        .failed("Probe", "labclient", {"msg": "ignored"}, ignore_errors=True)
        .failed("Rescued", "labsrc", {"msg": "rescued"})
        .failed("Start the VM", "labdst", {"msg": "no QEMU"})
        .failed("Later", "labsrc", {"msg": "later"})
        .recap(failures={"labdst": 1, "labsrc": 1}, rescued={"labsrc": 1})
    )

    found = failure(events.items)

    assert found is not None
    assert (found.task, found.host, found.message) == ("Start the VM", "labdst", "no QEMU")


def test_failure_message_carries_a_failed_items_message_and_stderr():
    res = {
        "msg": "One or more items failed",
        "results": [{"failed": False}, {"failed": True, "msg": "non-zero return code"}],
        "stderr": "ip: command not found",
    }
    events = Events().failed("Loop", "labsrc", res).recap(failures={"labsrc": 1})

    found = failure(events.items)

    assert found is not None
    assert found.message == (
        "One or more items failed: non-zero return code: ip: command not found"
    )


# -- exceptions -----------------------------------------------------------------------


def test_unreachable_host_is_an_infrastructure_error():
    events = (
        Events()
        .unreachable("Connect to the host", "labsrc", "Failed to connect to the host via ssh")
        .recap(dark={"labsrc": 1})
    )

    error = raised(events)

    assert isinstance(error, InfrastructureError)
    assert (error.task, error.host) == ("Connect to the host", "labsrc")
    assert "Failed to connect" in error.message


def test_argument_spec_failure_is_bad_input_naming_the_variable():
    res = {
        "msg": "Validation of arguments failed:\nargument 'migration_max_bandwidth' is of type "
        "str and we were unable to convert to int",
        "argument_errors": [
            "argument 'migration_max_bandwidth' is of type str and we were unable to convert"
        ],
        "argument_spec_data": {
            "migration_max_bandwidth": {"type": "int"},
            "migration_max": {"type": "int"},
            "migration_vm": {"type": "str"},
        },
    }
    events = (
        Events()
        .failed(
            "Validating arguments against arg spec 'main' - Live-migrate a VM",
            "labsrc",
            res,
            task_action="ansible.builtin.validate_argument_spec",
        )
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is BadInput
    assert error.variables == ("migration_max_bandwidth",)
    assert "migration_max_bandwidth" in str(error)


def test_the_check_of_every_input_is_bad_input_naming_each_variable():
    res = {
        "msg": "Refused before anything changed: migration_port: 70000 is out of range; "
        "migration_uri: 'exec:touch /tmp/x': ...",
        "invalid": [
            {"variable": "migration_port", "problem": "70000 is out of range", "hosts": []},
            {"variable": "migration_uri", "problem": "'exec:touch /tmp/x': ...", "hosts": []},
        ],
    }
    events = (
        Events()
        .failed(
            "Check the variables of every host and the extra vars",
            "localhost",
            res,
            task_action="qmigrate_inputs",
        )
        .recap(failures={"localhost": 1})
    )

    error = raised(events)

    assert type(error) is BadInput
    assert error.variables == ("migration_port", "migration_uri")


def test_failed_migration_carries_the_record_read_from_run_json(tmp_path):
    path = tmp_path / RUN_ID / "run.json"
    path.parent.mkdir()
    failed_record = record(
        status="failed", error="capabilities: warp-drive not supported", verification={}
    )
    path.write_text(json.dumps(failed_record))
    message = "Migration of vm0 from labsrc to labdst failed: capabilities: warp-drive ..."
    events = (
        fact_event(Events(), failed_record)
        .failed("Fail with the cause", "labsrc", {"msg": message}, role="migration")
        .recap(
            failures={"labsrc": 1},
            rescued={"labsrc": 1},
            artifact_data={
                "qmigrate_run": published(failed_record),
                "qmigrate_run_json": str(path),
            },
        )
    )

    error = raised(events)

    assert isinstance(error, MigrationFailed)
    assert error.result is not None
    assert error.result.status == "failed"
    assert error.result.error.startswith("capabilities: warp-drive")
    assert error.result.record_path == path.resolve()
    assert error.result.record["timeline"] == failed_record["timeline"]
    assert error.result.verified is None


def test_failed_verification_after_the_record_is_a_failed_migration():
    rec = record(verification={"migration_completed": True, "heartbeat_without_gap": False})
    events = (
        fact_event(Events(), rec)
        .failed(
            "Check every verification",
            "labsrc",
            {"msg": "Verification failed for x: heartbeat_without_gap"},
            task_action="ansible.builtin.assert",
        )
        .recap(failures={"labsrc": 1}, artifact_data={"qmigrate_run": published(rec)})
    )

    error = raised(events)

    assert isinstance(error, MigrationFailed)
    assert error.result is not None
    assert error.result.verified is False
    assert error.result.record_path is None


def test_failure_after_a_record_of_success_is_not_a_failed_migration():
    events = (
        fact_event(Events(), record())
        .failed("Write run.json", "labsrc", {"msg": "No space left on device"})
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is PlaybookFailed
    assert error.task == "Write run.json"


def test_assert_naming_a_variable_is_bad_input():
    message = "qmigrate_source (labsrc) and qmigrate_destination (labsrc) must be two hosts"
    events = (
        Events()
        .failed(
            "Check the source and destination hosts",
            "labsrc",
            {"msg": message},
            task_action="ansible.builtin.assert",
        )
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is BadInput
    assert error.variables == ("qmigrate_source", "qmigrate_destination")


def test_assert_naming_no_variable_and_other_failures_are_playbook_failures():
    events = (
        Events()
        .failed(
            "Check the platform",
            "labsrc",
            {"msg": "The qemu role supports Debian and Ubuntu on x86_64"},
            task_action="ansible.builtin.assert",
        )
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is PlaybookFailed
    assert error.message == "The qemu role supports Debian and Ubuntu on x86_64"


def test_run_without_a_failed_task_reports_ansibles_errors():
    events = Events().add(
        "verbose", stdout="\x1b[0;31m[ERROR]: the playbook: missing.yml could not be found\x1b[0m"
    )

    error = raised(events)

    assert type(error) is PlaybookFailed
    assert error.task == ""
    assert "the playbook: missing.yml could not be found" in error.message
    assert "rc 2" in error.message


def test_run_that_never_started_reports_its_last_words():
    events = Events().add("verbose", stdout="The command was not found or was not executable: x.")

    error = raised(events)

    assert error.message.endswith(": The command was not found or was not executable: x.")


def test_named_variables_in_a_message_need_a_project_prefix():
    events = Events().failed(
        "Check", "labsrc", {"msg": "lab_subnet overlaps; __lab_overlaps, subnet_mask, vm0"}
    )
    found = failure(events.items)
    assert found is not None

    assert named_variables(found, PREFIXES) == ("lab_subnet",)
