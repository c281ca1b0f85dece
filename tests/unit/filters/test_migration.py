"""The migration filters (filter_plugins/migration.py): the guest's heartbeats and whether
they continued across a migration, and the summary lines of a run record."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils.migration import parse_info_migrate, summary

from filter_plugins.migration import (
    heartbeat_continuity,
    heartbeats,
    migration_default_uri,
    migration_found,
    migration_settings,
    migration_summary,
)
from tests.unit.qemu_answers import QMP_COMPLETED, info_migrate

# heartbeats and heartbeat_continuity


def beats(*counters: int) -> str:
    """Heartbeat lines as the guest's /init prints them, through a tty (CR LF)."""
    return "".join(f"qmigrate-heartbeat {n} {2 + n / 10:.2f}\r\n" for n in counters)


def test_heartbeats_ignores_a_partial_last_line():
    text = "qmigrate-heartbeat 1 2.41\nqmigrate-heartbeat 2 2.52\nqmigrate-heartbeat 3 2.6"

    counters = heartbeats(text)

    assert counters == [1, 2]


def test_heartbeats_reads_crlf_lines():
    text = beats(7, 8, 9)

    counters = heartbeats(text)

    assert counters == [7, 8, 9]


def test_heartbeats_ignores_other_console_output_and_malformed_heartbeats():
    text = (
        "[    1.234567] random: crng init done\r\n"
        "qmigrate: guest ready eth0=10.0.0.2/24\r\n"
        "qmigrate-heartbeat x 2.41\r\n"
        "qmigrate-heartbeat 4\r\n"
        "qmigrate-heartbeat 5 2.52 extra\r\n"
        "qmigrate-heartbeat 6 2.63\r\n"
    )

    counters = heartbeats(text)

    assert counters == [6]


def test_heartbeats_rejects_what_is_not_text():
    with pytest.raises(AnsibleFilterError, match="NoneType"):
        heartbeats(None)


def test_continuity_of_a_guest_that_kept_running():
    source, head, tail = beats(*range(1, 11)), beats(11, 12, 13), beats(40, 41, 42)

    result = heartbeat_continuity(source, head, tail)

    assert result == {
        "source_last": 10,
        "destination_first": 11,
        "destination_latest": 42,
        "missed": 0,
        "continues": True,
    }


def test_continuity_counts_a_line_split_between_the_logs_as_missed():
    line = beats(11)
    source = beats(*range(1, 11)) + line[:20]
    head = line[20:] + beats(12, 13)

    result = heartbeat_continuity(source, head, beats(40))

    assert (result["source_last"], result["destination_first"]) == (10, 12)
    assert result["missed"] == 1
    assert result["continues"] is True


def test_continuity_sees_a_reboot_on_the_destination():
    boot = "[    0.000000] Linux version 5.10.54\r\nqmigrate: guest ready eth0=10.0.0.2/24\r\n"

    result = heartbeat_continuity(beats(48, 49, 50), boot + beats(1, 2), beats(30, 31))

    assert result["destination_first"] == 1
    assert result["continues"] is False


def test_continuity_without_a_heartbeat_on_the_destination():
    result = heartbeat_continuity(beats(9, 10), "", "")

    assert result == {
        "source_last": 10,
        "destination_first": None,
        "destination_latest": None,
        "missed": None,
        "continues": False,
    }


def test_continuity_of_a_destination_that_does_not_advance():
    result = heartbeat_continuity(beats(9, 10), beats(11), beats(11))

    assert result["missed"] == 0
    assert result["continues"] is False


# migration_summary


def record(**changes) -> dict:
    """A run record as roles/migration/tasks/record.yml assembles it."""
    base = {
        "run_id": "20250101T120000Z-vm0",
        "status": "completed",
        "error": "",
        "vm": "vm0",
        "source": "labsrc",
        "destination": "labdst",
        "uri": "tcp:10.0.0.2:4444",
        "already_migrated": False,
        "qemu": summary(QMP_COMPLETED),
        "verification": {
            "migration_completed": True,
            "destination_running": True,
            "heartbeat_continues": True,
            "guest_answers_ping": None,
        },
    }
    return {**base, **changes}


def test_summary_lines_of_a_completed_migration():
    run = record()

    lines = migration_summary(run)

    assert lines == [
        "vm0: labsrc -> labdst over tcp:10.0.0.2:4444: completed",
        "total 355 ms, downtime 27 ms, setup 2 ms, 104.8 MiB transferred at 2495.6 Mbit/s",
        "verified: migration_completed, destination_running, heartbeat_continues",
        "record: 20250101T120000Z-vm0/run.json",
    ]


def test_summary_lines_of_an_already_migrated_vm_without_statistics():
    run = record(already_migrated=True, qemu={})

    lines = migration_summary(run)

    assert lines[0] == "vm0: labsrc -> labdst over tcp:10.0.0.2:4444: completed (already migrated)"
    assert lines[1] == "total -, downtime -, setup -, - transferred at -"


def test_summary_lines_of_a_failed_migration_name_the_error_and_failed_checks():
    error = "migration to tcp:10.0.0.2:4444 failed after 0.4 s: Broken pipe"
    run = record(
        status="failed",
        error=error,
        qemu=summary(parse_info_migrate(info_migrate("failed"))),
        verification={
            "migration_completed": False,
            "source_running": True,
            "destination_running": False,
            "guest_answers_ping": None,
        },
    )

    lines = migration_summary(run)

    assert lines == [
        "vm0: labsrc -> labdst over tcp:10.0.0.2:4444: failed",
        f"error: {error}",
        "total 0 ms, downtime -, setup -, - transferred at -",
        "verified: source_running; FAILED: destination_running, migration_completed",
        "record: 20250101T120000Z-vm0/run.json",
    ]


# -- what a migration sets on both QEMUs ------------------------------------------------


def test_qmigrates_defaults_lift_the_cap_and_keep_one_stream():
    assert migration_settings("tcp:10.10.1.2:4444") == {
        "uri": "tcp:10.10.1.2:4444",
        "capabilities": {},
        "parameters": {"max-bandwidth": 0, "downtime-limit": 300},
    }


def test_the_seeds_method_leaves_qemus_own_settings():
    settings = migration_settings("tcp:10.10.1.2:4444", "seed", "false", "4", "0", "300")

    assert (settings["capabilities"], settings["parameters"]) == ({}, {})


@pytest.mark.parametrize(
    ("uri", "postcopy", "multifd"),
    [
        ("tcp:10.10.1.2:4444", "false", True),
        ("unix:/run/qmigrate/labsrc/vm0-incoming/migration.sock", False, True),
        ("tcp:10.10.1.2:4444", "true", False),  # postcopy and multifd do not mix on 7.2
        ("exec:cat > /dev/null", False, False),
    ],
)
def test_multifd_with_more_than_one_channel_over_a_socket_without_postcopy(uri, postcopy, multifd):
    settings = migration_settings(uri, "qmigrate", postcopy, "4")

    assert ("multifd" in settings["capabilities"]) is multifd
    assert settings["parameters"].get("multifd-channels") == (4 if multifd else None)
    assert ("postcopy-ram" in settings["capabilities"]) is (postcopy == "true")


def test_capabilities_and_parameters_given_win():
    settings = migration_settings(
        "tcp:10.10.1.2:4444",
        "qmigrate",
        False,
        4,
        "1000",
        "500",
        {"multifd": False, "auto-converge": True},
        {"downtime-limit": 50},
    )

    assert settings["capabilities"] == {"multifd": False, "auto-converge": True}
    assert settings["parameters"] == {
        "max-bandwidth": 1000,
        "downtime-limit": 50,
        "multifd-channels": 4,
    }


def test_the_default_uri_by_transport():
    assert migration_default_uri("", "tcp", "/run/x", "10.10.1.2/24", "4444") == (
        "tcp:10.10.1.2:4444"
    )
    assert migration_default_uri("", "unix", "/run/qmigrate/labsrc/vm0-incoming", "", 4444) == (
        "unix:/run/qmigrate/labsrc/vm0-incoming/migration.sock"
    )
    assert migration_default_uri("tcp:10.0.0.9:1", "tcp", "/run/x", "", 1) == "tcp:10.0.0.9:1"
    with pytest.raises(AnsibleFilterError, match="no experiment_address"):
        migration_default_uri("", "tcp", "/run/x", "", 4444)


# migration_found: what a state check found of a migration done in an earlier run

ACCOUNT = {"msg": "the VM has already migrated", "vm_status": "postmigrate", "status": "completed"}
GUEST = {"vm_status": "running", "first": 108, "latest": 318, "head": "", "tail": ""}


def test_a_guest_that_arrived_earlier_is_found_on_both_sides():
    found = migration_found("running", ACCOUNT, GUEST)

    assert found == {"source": ACCOUNT, "guest": GUEST}


@pytest.mark.parametrize(
    ("status", "account", "guest"),
    [
        ("inmigrate", ACCOUNT, GUEST),  # the destination waits: this run migrates
        ("", ACCOUNT, GUEST),  # nobody asked the destination
    ],
    ids=["destination-waits", "destination-not-asked"],
)
def test_nothing_is_found_unless_the_destination_runs_the_guest(status, account, guest):
    assert migration_found(status, account, guest) == {"source": {}, "guest": {}}


@pytest.mark.parametrize(
    "account",
    [{}, None, {**ACCOUNT, "vm_status": "running"}, {**ACCOUNT, "msg": "migrated"}],
    ids=["none-given", "null", "source-runs", "another-answer"],
)
def test_the_source_is_asked_again_unless_its_account_says_it_migrated(account):
    found = migration_found("running", account, GUEST)

    assert found["source"] == {} and found["guest"] == GUEST


@pytest.mark.parametrize(
    "guest",
    [
        {},
        {**GUEST, "vm_status": "paused"},
        {**GUEST, "latest": 108},  # one heartbeat: not seen going on
        {**GUEST, "first": None},
        {**GUEST, "latest": None},
    ],
    ids=["none-given", "paused", "no-later-heartbeat", "no-heartbeat", "no-tail"],
)
def test_the_destination_is_asked_again_unless_its_guest_went_on(guest):
    found = migration_found("running", ACCOUNT, guest)

    assert found["guest"] == {} and found["source"] == ACCOUNT


def test_counters_given_as_strings_compare_as_numbers():
    found = migration_found("running", ACCOUNT, {**GUEST, "first": "9", "latest": "10"})

    assert found["guest"]["latest"] == "10"
