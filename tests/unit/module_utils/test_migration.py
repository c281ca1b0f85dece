"""The migration helpers (module_utils/migration.py): HMP statistics, parameters and
capabilities as QEMU takes them, timeline points, and HMPMonitor against a fake HMP
monitor on a real UNIX socket."""

from __future__ import annotations

import pytest
from ansible.module_utils import migration
from ansible.module_utils.migration import (
    HMPMonitor,
    MigrationError,
    coerce_parameters,
    connect,
    listening_uris,
    machine_family,
    machine_mismatch,
    parse_info_migrate,
    sample,
    strict_bool,
    summary,
)
from ansible.module_utils.qmp import HMPClient

from tests.unit.fakes import FakeHMP, FakeQEMU
from tests.unit.qemu_answers import KIB, QMP_COMPLETED, info_migrate

# parse_info_migrate


def test_parse_info_migrate_completed_scales_kbytes_and_keeps_known_fields_only():
    text = info_migrate("completed")

    stats = parse_info_migrate(text)

    assert stats == {
        "status": "completed",
        "total-time": 355,
        "downtime": 27,
        "setup-time": 2,
        "ram": {
            "transferred": 107366 * KIB,
            "mbps": 2495.6,
            "remaining": 0,
            "total": 279368 * KIB,
            "duplicate": 43485,
            "normal": 26694,
            "normal-bytes": 106776 * KIB,
            "dirty-sync-count": 3,
            "multifd-bytes": 0,
            "pages-per-second": 340547,
            "precopy-bytes": 101858 * KIB,
            "downtime-bytes": 5508 * KIB,
        },
    }


def test_parse_info_migrate_active_has_expected_downtime_and_no_final_fields():
    text = info_migrate("active")

    stats = parse_info_migrate(text)

    assert stats == {
        "status": "active",
        "total-time": 1200,
        "expected-downtime": 300,
        "setup-time": 2,
        "ram": {
            "transferred": 2048 * KIB,
            "mbps": 16.78,
            "remaining": 200000 * KIB,
            "total": 279368 * KIB,
            "dirty-sync-count": 1,
            "dirty-pages-rate": 12,
        },
    }
    assert "downtime" not in stats
    assert "precopy-bytes" not in stats["ram"]


def test_parse_info_migrate_failed_keeps_the_reason_as_qmp_does():
    text = info_migrate("failed")

    stats = parse_info_migrate(text)

    assert stats["status"] == "failed"
    assert stats["error-desc"] == "Unable to write to socket: Broken pipe"
    assert stats["total-time"] == 0
    assert "ram" not in stats


def test_parse_info_migrate_of_no_migration_is_empty():
    stats = parse_info_migrate(info_migrate("completed").split("Migration status")[0])

    assert stats == {}


def test_parse_info_migrate_keeps_where_a_destination_listens():
    text = "globals:\nstore-global-state: on\nsocket address: [\n\ttcp:10.10.1.2:4444\n]\n"

    stats = parse_info_migrate(text)

    assert listening_uris(stats) == ["tcp:10.10.1.2:4444"]


def test_listening_uris_of_qmp_socket_addresses():
    info = {
        "socket-address": [
            {"type": "inet", "host": "10.10.1.2", "port": "4444", "ipv4": True},
            {"type": "unix", "path": "/run/qmigrate/labsrc/vm0-incoming/migration.sock"},
        ]
    }

    assert listening_uris(info) == [
        "tcp:10.10.1.2:4444",
        "unix:/run/qmigrate/labsrc/vm0-incoming/migration.sock",
    ]
    assert listening_uris({}) == []


# strict_bool and coerce_parameters


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("off", False),
        ("On", True),
        ("false", False),
        ("yes", True),
        (0, False),
        ("1", True),
    ],
)
def test_strict_bool_reads_what_ansible_users_write(value, expected):
    assert strict_bool(value, "x") is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, 0.5, None, [True]])
def test_strict_bool_refuses_anything_else(value):
    with pytest.raises(ValueError, match="is not a boolean"):
        strict_bool(value, "capabilities.multifd")


def test_coerce_parameters_follows_the_types_qemu_reports():
    current = {"max-bandwidth": 134217728, "tls-creds": "", "cpu-throttle-tailslow": False}
    wanted = {"max-bandwidth": "4000000", "tls-creds": 5, "cpu-throttle-tailslow": "on", "x": "1"}

    coerced = coerce_parameters(wanted, current)

    assert coerced == {
        "max-bandwidth": 4000000,
        "tls-creds": "5",
        "cpu-throttle-tailslow": True,
        "x": "1",
    }


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("4e6x", "is not an integer"),
        (-1, "must not be negative"),
        (1.5, "is not an integer"),
        (True, "is not an integer"),
    ],
)
def test_coerce_parameters_refuses_what_is_not_a_count(value, why):
    with pytest.raises(ValueError, match=why):
        coerce_parameters({"max-bandwidth": value}, {"max-bandwidth": 0})


# summary and sample


def test_summary_flattens_query_migrate_with_units_in_the_names():
    stats = QMP_COMPLETED

    flat = summary(stats)

    assert flat == {
        "status": "completed",
        "total_time_ms": 355,
        "downtime_ms": 27,
        "expected_downtime_ms": None,
        "setup_time_ms": 2,
        "transferred_bytes": 107366 * KIB,
        "remaining_bytes": 0,
        "total_bytes": 279368 * KIB,
        "throughput_mbps": 2495.6,
        "dirty_sync_count": 3,
        "duplicate_pages": 43485,
        "normal_pages": 26694,
        "precopy_bytes": 101858 * KIB,
        "downtime_bytes": 5508 * KIB,
        "postcopy_bytes": 0,
        "multifd_bytes": 0,
        "error": None,
    }


def test_summary_of_hmp_statistics_matches_the_qmp_one():
    hmp = parse_info_migrate(info_migrate("completed"))

    from_hmp, from_qmp = summary(hmp), summary(QMP_COMPLETED)

    # HMP prints "postcopy ram" only when it is not 0; everything else is the same.
    assert from_hmp == {**from_qmp, "postcopy_bytes": None}


def test_sample_is_a_timeline_point_relative_to_start(monkeypatch):
    stats = parse_info_migrate(info_migrate("active"))
    monkeypatch.setattr(migration.time, "time", lambda: 1012.5)

    point = sample(stats, start=1000.0)

    assert point == {
        "t": 12.5,
        "status": "active",
        "transferred": 2048 * KIB,
        "remaining": 200000 * KIB,
        "total": 279368 * KIB,
        "mbps": 16.78,
        "dirty_sync_count": 1,
        "dirty_pages_rate": 12,
    }


def test_sample_before_any_migration_has_status_none(monkeypatch):
    monkeypatch.setattr(migration.time, "time", lambda: 1000.25)

    point = sample({}, start=1000.0)

    assert point["t"] == 0.25
    assert point["status"] == "none"
    assert {value for key, value in point.items() if key not in ("t", "status")} == {None}


# HMPMonitor against a fake HMP monitor


@pytest.fixture
def hmp_monitor(fake_hmp):
    """An HMPMonitor connected to a fake HMP monitor answering REPLIES, and that monitor."""
    opened: list[HMPMonitor] = []

    def open_with(replies: dict[str, str]) -> tuple[HMPMonitor, FakeHMP]:
        server = fake_hmp(replies)
        client = HMPClient(server.path, timeout=2)
        client.connect()
        opened.append(HMPMonitor(client, server.path))
        return opened[-1], server

    yield open_with
    for monitor in opened:
        monitor.close()


@pytest.mark.parametrize(
    ("output", "status"),
    [
        ("VM status: running", "running"),
        ("VM status: paused (inmigrate)", "inmigrate"),
        ("VM status: paused (postmigrate)", "postmigrate"),
        ("VM status: paused", "paused"),
    ],
)
def test_hmp_status_reads_qmps_name_for_the_state(hmp_monitor, output, status):
    monitor, server = hmp_monitor({"info status": output})

    result = monitor.status()

    assert result == status
    assert server.received == ["info status"]


def test_hmp_yank_instances_name_their_types(hmp_monitor):
    monitor, _ = hmp_monitor({"info yank": "chardev: compat_monitor0\nmigration\n"})

    assert monitor.yank_instances() == ["chardev", "migration"]


def test_hmp_yank_instances_of_a_qemu_without_them_are_none(hmp_monitor):
    older, _ = hmp_monitor({})  # a QEMU before 6.0: unknown command

    assert older.yank_instances() == []


def test_hmp_capabilities_reads_on_and_off(hmp_monitor):
    output = "xbzrle: off\r\nauto-converge: on\r\nevents: off\r\npostcopy-ram: on"
    monitor, _ = hmp_monitor({"info migrate_capabilities": output})

    caps = monitor.capabilities()

    assert caps == {"xbzrle": False, "auto-converge": True, "events": False, "postcopy-ram": True}


def test_hmp_set_parameters_sends_bandwidth_in_bytes(hmp_monitor):
    monitor, server = hmp_monitor(
        {
            "migrate_set_parameter max-bandwidth 1000B": "",
            "migrate_set_parameter downtime-limit 300": "",
        }
    )

    monitor.set_parameters({"max-bandwidth": 1000, "downtime-limit": 300})

    assert server.received == [
        "migrate_set_parameter max-bandwidth 1000B",
        "migrate_set_parameter downtime-limit 300",
    ]


def test_hmp_error_reply_raises_migration_error_naming_the_command(hmp_monitor):
    monitor, _ = hmp_monitor({"migrate -d tcp:10.0.0.2:4444": "Error: foo"})

    with pytest.raises(MigrationError) as caught:
        monitor.migrate("tcp:10.0.0.2:4444")

    assert "'migrate -d tcp:10.0.0.2:4444'" in str(caught.value)
    assert "Error: foo" in str(caught.value)


def test_hmp_output_of_a_command_that_acts_is_an_error(hmp_monitor):
    # QEMU 7.2 says this, without "Error", to a migrate command with a stray argument.
    monitor, _ = hmp_monitor({"migrate -d tcp:10.0.0.2:4444": "migrate: extraneous characters"})

    with pytest.raises(MigrationError, match="extraneous characters"):
        monitor.migrate("tcp:10.0.0.2:4444")


def test_hmp_query_parses_info_migrate(hmp_monitor):
    text = info_migrate("completed")
    monitor, _ = hmp_monitor({"info migrate": text.rstrip("\n").replace("\n", "\r\n")})

    stats = monitor.query()

    assert stats == parse_info_migrate(text)


def test_hmp_query_reads_a_failure_whose_reason_says_invalid(hmp_monitor):
    text = "Migration status: failed (Unable to write to socket: Invalid argument)\r\n"
    monitor, _ = hmp_monitor({"info migrate": text + "total time: 0 ms"})

    stats = monitor.query()

    assert stats["status"] == "failed"
    assert stats["error-desc"] == "Unable to write to socket: Invalid argument"


def test_connect_returns_an_hmp_monitor_for_an_hmp_socket(fake_hmp):
    server = fake_hmp({"info status": "VM status: running"})

    monitor = connect(server.path, 2)
    try:
        status = monitor.status()
    finally:
        monitor.close()

    assert isinstance(monitor, HMPMonitor)
    assert (monitor.protocol, monitor.path) == ("hmp", server.path)
    assert status == "running"


# read_baseline and write_baseline: the settings a VM started with


def test_a_baseline_written_from_a_qemu_reads_back(tmp_path):
    fake = FakeQEMU(tmp_path / "qmp.sock")
    path = tmp_path / "migration-baseline.json"
    try:
        mon = migration.connect(fake.path, 2)
        try:
            migration.write_baseline(mon, str(path))
        finally:
            mon.close()
    finally:
        fake.stop()

    kept = migration.read_baseline(str(path))

    assert kept["parameters"] == fake.parameters and kept["capabilities"] == fake.capabilities
    assert migration.read_baseline(str(tmp_path / "absent.json")) is None
    assert migration.read_baseline(None) is None


def test_a_baseline_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "migration-baseline.json"
    path.write_text("{torn")

    with pytest.raises(ValueError, match="cannot be read as JSON"):
        migration.read_baseline(str(path))


def test_hmp_identity_reads_the_version_package_and_machine_type(hmp_monitor):
    monitor, _ = hmp_monitor(
        {
            "info version": "7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3",
            "qom-get /machine type": '"pc-i440fx-7.2-machine"',
        }
    )

    assert monitor.identity() == {
        "version": "7.2.22",
        "package": "Debian 1:7.2+dfsg-7+deb12u18+b3",
        "machine": "pc-i440fx-7.2",
    }


def test_hmp_identity_of_a_monitor_that_cannot_tell_is_empty(hmp_monitor):
    monitor, _ = hmp_monitor({})  # unknown commands

    assert monitor.identity() == {"version": "", "package": "", "machine": ""}


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("pc-i440fx-7.2", "pc-i440fx"),
        ("pc-q35-10.0", "pc-q35"),
        ("pc", "pc"),
        ("microvm", "microvm"),
    ],
)
def test_machine_family_drops_the_version(name, family):
    assert machine_family(name) == family


def test_machine_mismatch_names_the_newest_type_of_the_family_both_know():
    mine = {
        "version": "7.2.22",
        "machine": "pc-i440fx-7.2",
        "machine_types": ["pc-i440fx-7.1", "pc-i440fx-7.2", "pc-q35-7.2"],
    }
    peer = {
        "version": "10.0.2",
        "machine": "pc-i440fx-10.0",
        "machine_types": ["pc-i440fx-7.1", "pc-i440fx-7.2", "pc-i440fx-10.0", "pc-q35-10.0"],
    }

    why = machine_mismatch(mine, peer, "labsrc")

    assert why.startswith("labsrc runs machine type pc-i440fx-7.2 (QEMU 7.2.22)")
    assert "vm_machine=pc-i440fx-7.2, the newest pc-i440fx type both know" in why
    # 10.0 is newer than 7.2 by number, not by text ("10.0" < "7.2")
    both = {**mine, "machine_types": [*mine["machine_types"], "pc-i440fx-10.0"]}
    assert "vm_machine=pc-i440fx-10.0," in machine_mismatch(both, peer, "labsrc")


def test_machine_mismatch_is_empty_for_one_type_or_what_is_not_known():
    same = {"version": "7.2.22", "machine": "pc-i440fx-7.2"}
    assert machine_mismatch(same, dict(same, version="10.0.2"), "labsrc") == ""
    assert machine_mismatch(same, {}, "labsrc") == ""
    assert machine_mismatch({"machine": ""}, same, "labsrc") == ""
