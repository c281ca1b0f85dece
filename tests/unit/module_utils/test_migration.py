"""Unit tests for the migration helpers: HMP statistics, timeline points, heartbeat and
summary filters, and HMPMonitor against a fake HMP monitor on a real UNIX socket."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils import migration
from ansible.module_utils.migration import (
    HMPMonitor,
    MigrationError,
    coerce_parameters,
    connect,
    listening_uris,
    parse_info_migrate,
    sample,
    strict_bool,
    summary,
)
from ansible.module_utils.qmp import HMPClient

from filter_plugins.migration import heartbeat_continuity, heartbeats, migration_summary
from library import qemu_migrate
from tests.unit import DATA

KIB = 1024

# What QEMU 7.2's query-migrate returns for the migration info_migrate_completed.txt shows.
QMP_COMPLETED = {
    "status": "completed",
    "setup-time": 2,
    "downtime": 27,
    "total-time": 355,
    "ram": {
        "transferred": 107366 * KIB,
        "remaining": 0,
        "total": 279368 * KIB,
        "duplicate": 43485,
        "skipped": 0,
        "normal": 26694,
        "normal-bytes": 106776 * KIB,
        "dirty-sync-count": 3,
        "page-size": 4 * KIB,
        "mbps": 2495.6,
        "pages-per-second": 340547,
        "multifd-bytes": 0,
        "postcopy-requests": 0,
        "precopy-bytes": 101858 * KIB,
        "downtime-bytes": 5508 * KIB,
        "postcopy-bytes": 0,
        "dirty-pages-rate": 0,
    },
}


def info_migrate(name: str) -> str:
    return (DATA / f"info_migrate_{name}.txt").read_text()


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


# event_point (library/qemu_migrate.py)


def test_event_point_uses_qemus_timestamp():
    event = {
        "event": "MIGRATION",
        "data": {"status": "completed"},
        "timestamp": {"seconds": 1700000012, "microseconds": 345678},
        "received": 1700000099.0,
    }

    point = qemu_migrate.event_point(event, start=1700000000.0)

    assert point == {"t": 12.3457, "event": "MIGRATION", "data": {"status": "completed"}}


def test_event_point_without_timestamp_uses_when_it_was_received():
    event = {"event": "STOP", "received": 1700000001.5}

    point = qemu_migrate.event_point(event, start=1700000000.0)

    assert point == {"t": 1.5, "event": "STOP", "data": {}}


# HMPMonitor against a fake HMP monitor

HMP_BANNER = "QEMU 7.2.22 monitor - type 'help' for more information\r\n"
HMP_PROMPT = "(qemu) "


class FakeHMP:
    """An HMP monitor on a UNIX socket serving one client from a thread.

    It sends the banner and prompt, then answers each command line with the line's echo
    (plain, not QEMU's per-keystroke redraw) and REPLIES[line]. stop() re-raises whatever
    failed in the thread.
    """

    def __init__(self, path: Path, replies: dict[str, str]) -> None:
        self.path = str(path)
        self.replies = replies
        self.received: list[str] = []
        self.error: BaseException | None = None
        self.conn: socket.socket | None = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.conn, _ = self.listener.accept()
            self.conn.settimeout(2)
            with self.conn, self.conn.makefile("rb") as lines:
                self.conn.sendall((HMP_BANNER + HMP_PROMPT).encode())
                for raw in lines:
                    line = raw.decode().rstrip("\r\n")
                    self.received.append(line)
                    output = self.replies.get(line, f"unknown command: '{line}'")
                    # QEMU prints nothing, not an empty line, for a command without output.
                    answer = f"{output}\r\n" if output else ""
                    self.conn.sendall(f"{line}\r\n{answer}{HMP_PROMPT}".encode())
        except BaseException as err:  # handed to the test by stop()
            self.error = err

    def stop(self) -> None:
        if self.conn is not None:
            # Ends the thread's read loop; fails only if the client hung up first.
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(3)
        self.listener.close()
        assert not self.thread.is_alive(), "fake HMP monitor thread did not finish"
        if self.error is not None:
            raise self.error


@pytest.fixture
def fake_hmp(tmp_path: Path):
    servers: list[FakeHMP] = []

    def start(replies: dict[str, str]) -> FakeHMP:
        servers.append(FakeHMP(tmp_path / "monitor.sock", replies))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


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


class _Answers:
    """A monitor whose query-migrate answers come from a list, the last one repeating."""

    def __init__(self, answers: list[dict]) -> None:
        self.answers = answers
        self.asked = 0

    def query(self) -> dict:
        self.asked += 1
        return self.answers[min(self.asked - 1, len(self.answers) - 1)]


def test_completed_stats_are_asked_again_until_the_total_time_is_in():
    # QEMU 7.2 says "completed" a moment before it stores total-time and downtime.
    early = dict(QMP_COMPLETED, **{"total-time": 0, "downtime": 0})
    migration = qemu_migrate.Migration.__new__(qemu_migrate.Migration)
    migration.mon = _Answers([early, QMP_COMPLETED])
    assert migration.settled_stats(early) == QMP_COMPLETED
    assert migration.mon.asked == 2


def test_other_final_states_are_not_asked_again():
    failed = {"status": "failed", "error-desc": "Connection reset by peer"}
    migration = qemu_migrate.Migration.__new__(qemu_migrate.Migration)
    migration.mon = _Answers([failed])
    assert migration.settled_stats(failed) is failed
    assert migration.mon.asked == 0
