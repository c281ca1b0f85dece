"""The qemu_migrate module's decisions (library/qemu_migrate.py) against a scripted QEMU:
a fake QMP monitor on a real UNIX socket whose migration goes through the states a test
gives it. What is checked is what the module sends QEMU (never ``cont`` to a source whose
guest lives elsewhere) and what it reports."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from ansible.module_utils.migration import QMPMonitor
from ansible.module_utils.qmp import QMPProtocolError

from library import qemu_migrate
from tests.unit.fakes import FakeQEMU
from tests.unit.qemu_answers import QMP_COMPLETED

URI = "tcp:10.10.1.2:4444"


class Ended(Exception):
    """The module ended: exit_json (FAILED false) or fail_json (FAILED true)."""

    def __init__(self, failed: bool, result: dict) -> None:
        super().__init__(result.get("msg", ""))
        self.failed = failed
        self.result = result


class FakeModule:
    """What qemu_migrate.Migration uses of AnsibleModule."""

    def __init__(self, params: dict, check_mode: bool = False) -> None:
        self.params = params
        self.check_mode = check_mode
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def exit_json(self, **result: Any) -> None:
        raise Ended(False, result)

    def fail_json(self, **result: Any) -> None:
        raise Ended(True, result)


@pytest.fixture
def run(monkeypatch):
    """Run the module against a fake QEMU with PARAMS over the defaults; the Ended it
    raised. The module's signal handlers are put back afterwards."""
    monkeypatch.setattr(qemu_migrate, "SETTLE_SECONDS", 2)
    saved = {sig: signal.getsignal(sig) for sig in qemu_migrate.Lifeline.SIGNALS}

    def go(fake: FakeQEMU, during: Callable[[Any], None] | None = None, **params: Any) -> Ended:
        defaults = {
            "socket": fake.path,
            "state": "completed",
            "uri": URI,
            "capabilities": {},
            "parameters": {},
            "wait": True,
            "timeout": 30,
            "poll_interval": 0.01,
            "postcopy_after_passes": None,
            "monitor_timeout": 1,
            "interrupt_record": None,
            "allow_running": False,
            "expect_migrated": False,
            "serial_log": None,
            "baseline": None,
            "peer": None,
            "tls": None,
        }
        module = FakeModule({**defaults, **params})
        worker = qemu_migrate.Migration(module)
        if during is not None:
            during(worker)
        with pytest.raises(Ended) as ended:
            worker.run()
        ended.value.result.setdefault("warnings", module.warnings)
        return ended.value

    yield go
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def active(sent: int, sync: int = 1) -> dict:
    return {"status": "active", "ram": {"transferred": sent, "dirty-sync-count": sync}}


# -- a migration that ends on its own -------------------------------------------------


def test_a_completed_migration_is_reported_with_its_timeline(run, qemu):
    fake = qemu(states=[active(1), active(2), {"status": "completed", "total-time": 40}])

    ended = run(fake)

    assert not ended.failed
    assert ended.result["status"] == "completed"
    assert [p["status"] for p in ended.result["timeline"]] == ["active", "active", "completed"]
    assert "cont" not in fake.names()


def test_a_source_still_finishing_at_completion_is_asked_again(run, qemu):
    """QEMU 10.0 says completed while the source is still finish-migrate (a bench run's
    verification failed on it): the module waits for postmigrate."""
    fake = qemu(states=[active(1), {"status": "completed", "total-time": 40}], finishing=3)

    ended = run(fake)

    assert not ended.failed and ended.result["vm_status"] == "postmigrate"


def test_a_failed_precopy_migration_leaves_the_source_running_without_cont(run, qemu):
    # QEMU restarts the source itself after a failed pre-copy migration.
    fake = qemu(states=[active(1), {"status": "failed", "error-desc": "Broken pipe"}])

    ended = run(fake)

    assert ended.failed
    assert "failed after" in ended.result["msg"] and "Broken pipe" in ended.result["msg"]
    assert ended.result["vm_status"] == "running"
    assert "cont" not in fake.names()


def test_a_failed_source_left_paused_is_resumed(run, qemu):
    def failed_and_paused(fake: FakeQEMU) -> dict:
        fake.vm = "paused"
        return {"status": "failed"}

    fake = qemu(states=[active(1), failed_and_paused])

    ended = run(fake)

    assert ended.failed
    assert fake.names().count("cont") == 1
    assert ended.result["vm_status"] == "running"


def test_a_migration_failed_in_postcopy_never_resumes_the_source(run, qemu):
    def postcopy(fake: FakeQEMU) -> dict:
        fake.vm = "postmigrate"
        return {"status": "postcopy-active"}

    fake = qemu(states=[active(1), postcopy, {"status": "failed"}])

    ended = run(fake)

    assert ended.failed
    assert "in postcopy" in ended.result["msg"] and "not resumed" in ended.result["msg"]
    assert "cont" not in fake.names()
    assert "migrate_cancel" not in fake.names()


# -- a migration the module stops -----------------------------------------------------


def test_a_timeout_cancels_and_the_source_runs_on(run, qemu):
    fake = qemu(states=[active(1)])

    ended = run(fake, timeout=0.2)

    assert ended.failed
    assert "did not finish within 0.2 s (status active" in ended.result["msg"]
    assert "cancelled and the source VM is running" in ended.result["msg"]
    assert "migrate_cancel" in fake.names()
    assert ended.result["timeline"][0]["status"] == "active", "the timeline is kept"
    assert ended.result["timeline"][-1]["status"] == "cancelled", "and says when it ended"


def test_a_cancel_that_races_completion_reports_completed_and_never_resumes(run, qemu):
    # The migration completes between the last poll and migrate_cancel: the destination
    # owns the guest, so the source must stay postmigrate.
    fake = qemu(states=[active(1)], cancel_to="completed")

    ended = run(fake, timeout=0.2)

    assert not ended.failed
    assert ended.result["status"] == "completed"
    assert any("completed before it could be cancelled" in w for w in ended.result["warnings"])
    assert "cont" not in fake.names()
    assert fake.vm == "postmigrate"


def test_a_timeout_in_postcopy_neither_cancels_nor_resumes(run, qemu):
    def postcopy(fake: FakeQEMU) -> dict:
        fake.vm = "postmigrate"
        return {"status": "postcopy-active", "ram": {"transferred": 5}}

    fake = qemu(states=[active(1, sync=2), postcopy])

    ended = run(fake, timeout=0.3, capabilities={"postcopy-ram": True}, postcopy_after_passes=1)

    assert ended.failed
    assert "did not finish within 0.3 s" in ended.result["msg"]
    assert "in postcopy, so it is not cancelled" in ended.result["msg"]
    assert "migrate-start-postcopy" in fake.names()
    assert "migrate_cancel" not in fake.names()
    assert "cont" not in fake.names()


def test_postcopy_paused_fails_at_once_saying_where_the_guest_is(run, qemu):
    def postcopy(fake: FakeQEMU) -> dict:
        fake.vm = "postmigrate"
        return {"status": "postcopy-active"}

    fake = qemu(states=[active(1), postcopy, {"status": "postcopy-paused"}])
    started = time.monotonic()

    ended = run(fake, timeout=30)

    assert time.monotonic() - started < 5, "it did not wait out the timeout"
    assert ended.failed
    assert "postcopy migration paused" in ended.result["msg"]
    assert "guest runs on the destination (tcp:10.10.1.2:4444)" in ended.result["msg"]
    assert "migrate_cancel" not in fake.names() and "cont" not in fake.names()


def test_a_monitor_error_mid_follow_cancels_and_keeps_the_timeline(run, qemu):
    # query 1 is the one before migrating; 2 and 3 are on the timeline, 4 never answers.
    fake = qemu(states=[active(1), active(2), active(3)], slow={4})

    ended = run(fake)

    assert ended.failed
    assert "the monitor failed while following the migration" in ended.result["msg"]
    assert "timed out" in ended.result["msg"]
    assert "cancelled and the source VM is running" in ended.result["msg"]
    statuses = [point["status"] for point in ended.result["timeline"]]
    assert statuses == ["active", "active", "cancelled"]  # the two before, and the end
    assert "migrate_cancel" in fake.names()


def test_an_interrupted_module_cancels_and_leaves_its_account(run, qemu, tmp_path):
    fake = qemu(states=[active(1)])
    record = tmp_path / "interrupted.json"

    def interrupt(worker) -> None:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    ended = run(fake, during=interrupt, interrupt_record=str(record))

    assert ended.failed
    assert ended.result["interrupted"] is True
    assert "interrupted: the module got SIGTERM" in ended.result["msg"]
    assert "migrate_cancel" in fake.names()
    account = json.loads(record.read_text())
    assert account["interrupted"] is True
    assert account["status"] == "cancelled"
    assert account["vm_status"] == "running"
    assert account["timeline"]


def test_a_stalled_migration_says_no_data_moved():
    timeline = [{"t": t / 10, "transferred": 100 if t > 5 else t} for t in range(100)]

    assert qemu_migrate.stalled(timeline) == ", no data sent for the last 9 s"
    assert qemu_migrate.stalled(timeline[:20]) == ""


# -- what the module refuses or accepts before it migrates ----------------------------


def test_a_postmigrate_source_whose_last_migration_failed_is_refused(run, qemu):
    fake = qemu(vm="postmigrate", before={"status": "failed"})

    ended = run(fake)

    assert ended.failed
    assert "already been migrated away (last migration: failed)" in ended.result["msg"]
    assert "migrate" not in fake.names()


def test_a_source_whose_last_migration_never_tore_down_is_refused_before_migrate(run, qemu):
    # QEMU 7.2 after a multifd migration whose destination died: failed, and its
    # migration's yank instance still registered; a migrate would be refused and leave
    # the state at setup.
    fake = qemu(before={"status": "failed"}, yank=["chardev", "migration"])

    ended = run(fake)

    assert ended.failed
    assert "never finished tearing down" in ended.result["msg"]
    assert "only a restart lets it migrate again" in ended.result["msg"]
    assert "migrate" not in fake.names()
    assert "migrate-set-capabilities" not in fake.names()


def test_other_yank_instances_are_no_obstacle(run, qemu):
    fake = qemu(yank=["chardev"])

    ended = run(fake)

    assert not ended.failed, ended.result
    assert "migrate" in fake.names()


def test_a_capability_given_as_off_stays_off(run, qemu):
    fake = qemu()

    ended = run(fake, capabilities={"multifd": "off", "auto-converge": "on"})

    assert not ended.failed
    assert fake.capabilities["multifd"] is False
    assert fake.capabilities["auto-converge"] is True


def test_what_an_earlier_migration_set_is_put_back_as_the_vm_started(run, qemu, tmp_path):
    fake = qemu()
    started = {"capabilities": dict(fake.capabilities), "parameters": dict(fake.parameters)}
    baseline = tmp_path / "migration-baseline.json"
    baseline.write_text(json.dumps(started))
    # as a VM is left that received the guest with multifd and no bandwidth cap
    fake.capabilities.update(multifd=True, **{"auto-converge": True})
    fake.parameters.update({"max-bandwidth": 0, "multifd-channels": 4})

    ended = run(
        fake,
        capabilities={"auto-converge": True},
        parameters={"downtime-limit": 50},
        baseline=str(baseline),
    )

    assert not ended.failed, ended.result
    assert fake.capabilities["multifd"] is False  # put back: not asked for now
    assert fake.capabilities["auto-converge"] is True  # asked for
    assert fake.parameters["max-bandwidth"] == started["parameters"]["max-bandwidth"]
    assert fake.parameters["multifd-channels"] == started["parameters"]["multifd-channels"]
    assert fake.parameters["downtime-limit"] == 50
    assert ended.result["capabilities"]["multifd"] is False


def test_without_a_baseline_file_nothing_is_put_back(run, qemu, tmp_path):
    fake = qemu()
    fake.capabilities["multifd"] = True

    ended = run(fake, baseline=str(tmp_path / "none.json"))

    assert not ended.failed and fake.capabilities["multifd"] is True


def test_a_capability_that_is_not_a_boolean_is_refused(run, qemu):
    fake = qemu()

    ended = run(fake, capabilities={"multifd": "maybe"})

    assert ended.failed
    assert "capabilities.multifd: 'maybe' is not a boolean" in ended.result["msg"]
    assert "migrate" not in fake.names()


def test_parameters_given_as_strings_get_qemus_types(run, qemu):
    fake = qemu()

    ended = run(fake, parameters={"max-bandwidth": "4000000", "multifd-channels": "4"})

    assert not ended.failed
    assert fake.parameters["max-bandwidth"] == 4000000
    assert fake.parameters["multifd-channels"] == 4


def test_a_parameter_that_is_not_a_number_is_refused_before_migrating(run, qemu):
    fake = qemu()

    ended = run(fake, parameters={"max-bandwidth": "fast"})

    assert ended.failed
    assert "parameters.max-bandwidth: 'fast' is not an integer" in ended.result["msg"]
    assert "migrate" not in fake.names()


# -- the destination ------------------------------------------------------------------


def test_a_destination_already_listening_on_the_uri_is_accepted(run, qemu):
    fake = qemu(vm="inmigrate")
    run(fake, state="incoming")

    again = run(fake, state="incoming")

    assert not again.failed and again.result["changed"] is False
    assert fake.names().count("migrate-incoming") == 1


def test_a_destination_listening_elsewhere_is_refused(run, qemu):
    fake = qemu(vm="inmigrate")
    run(fake, state="incoming")

    other = run(fake, state="incoming", uri="tcp:10.10.1.2:4445")

    assert other.failed
    assert "already listens on tcp:10.10.1.2:4444, not on tcp:10.10.1.2:4445" in other.result["msg"]


def test_a_destination_receiving_a_migration_is_refused(run, qemu):
    fake = qemu(vm="inmigrate", before={"status": "active"})

    ended = run(fake, state="incoming")

    assert ended.failed
    assert "already receiving a migration (status active)" in ended.result["msg"]


def test_a_bind_failure_is_not_taken_for_listening(run, qemu):
    fake = qemu(vm="inmigrate")
    fake._answer_incoming = fake._answer

    def refuse(command: str, arguments: Any) -> dict:
        if command == "migrate-incoming":
            fake.commands.append((command, arguments))
            desc = "Failed to find an available port: Address already in use"
            return {"error": {"class": "GenericError", "desc": desc}}
        return fake._answer_incoming(command, arguments)

    fake._answer = refuse

    ended = run(fake, state="incoming")

    assert ended.failed
    assert "refused to listen on tcp:10.10.1.2:4444" in ended.result["msg"]
    assert "Address already in use" in ended.result["msg"]


@pytest.mark.parametrize("option", ["timeout", "poll_interval"])
@pytest.mark.parametrize("value", [0, -1, float("inf")])
def test_main_refuses_times_that_are_not_positive_and_finite(run_main, option, value):
    result = run_main(qemu_migrate, {"socket": "/nonexistent", "uri": URI, option: value})

    assert result["failed"] is True
    assert result["msg"].startswith(f"{option}: ")
    assert "must be a positive, finite number of seconds" in result["msg"]


# -- a destination that already runs the guest ---------------------------------------


def test_a_running_destination_is_reported_when_allowed(run, qemu):
    fake = qemu(vm="running")

    refused = run(fake, state="incoming")
    allowed = run(fake, state="incoming", allow_running=True)

    assert refused.failed and "is running, not waiting for a migration" in refused.result["msg"]
    assert not allowed.failed
    assert (allowed.result["changed"], allowed.result["vm_status"]) == (False, "running")
    assert "migrate-incoming" not in fake.names()


def test_a_source_that_has_not_migrated_is_refused_when_its_guest_runs_elsewhere(run, qemu):
    fake = qemu(vm="running")

    ended = run(fake, expect_migrated=True)

    assert ended.failed
    assert "two VMs would run one guest" in ended.result["msg"]
    assert "migrate" not in fake.names()


def test_a_migrated_source_returns_the_end_of_its_serial_log(run, qemu, tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("x" * 70000 + "qmigrate-heartbeat 42 4.2\n")
    fake = qemu(states=[active(1), {"status": "completed", "total-time": 5}])

    ended = run(fake, serial_log=str(log))
    again = run(fake, serial_log=str(log), expect_migrated=True)

    assert ended.result["serial_tail"].endswith("qmigrate-heartbeat 42 4.2\n")
    assert len(ended.result["serial_tail"]) == 65536
    assert again.result["msg"] == "the VM has already migrated"
    assert again.result["serial_tail"] == ended.result["serial_tail"]


def test_a_migration_still_being_cancelled_is_waited_for_then_a_new_one_starts(run, qemu):
    # QEMU 7.2 with multifd stays 'cancelling' until its channels' sockets give up.
    fake = qemu(before={"status": "cancelling"}, states=[active(1), {"status": "completed"}])
    fake._query_before = fake._query

    def ending(fake_qemu=fake):
        if not fake_qemu.started and fake_qemu.queries >= 3:
            fake_qemu.migration = {"status": "cancelled"}
        return fake_qemu._query_before()

    fake._query = ending

    ended = run(fake)

    assert not ended.failed, ended.result["msg"]
    assert ended.result["status"] == "completed"
    assert "migrate" in fake.names()


# -- event_point and settled_stats ----------------------------------------------------


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


def test_a_monitor_error_while_waiting_between_looks_cancels_too(run, qemu, monkeypatch):
    # The wait between two looks reads the monitor too (for events): a connection lost
    # there is a monitor error like any other, not the module's own failure.
    fake = qemu(states=[active(1), active(2), active(3)])
    waits = []

    def pause(monitor, seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise QMPProtocolError("peer closed the connection while waiting for an event")

    monkeypatch.setattr(QMPMonitor, "pause", pause)

    ended = run(fake)

    assert ended.failed
    assert "the monitor failed while following the migration" in ended.result["msg"]
    assert "peer closed the connection" in ended.result["msg"]
    assert "migrate_cancel" in fake.names()
    assert [point["status"] for point in ended.result["timeline"]][:2] == ["active", "active"]


# -- two QEMU versions ----------------------------------------------------------------

QEMU10_TYPES = ("pc-i440fx-7.1", "pc-i440fx-7.2", "pc-i440fx-10.0", "pc-q35-7.2", "pc-q35-10.0")


def test_each_side_says_which_qemu_it_is_and_the_destination_which_types_it_knows(run, qemu):
    destination = qemu(
        vm="inmigrate", version=(10, 0, 2), machine="pc-i440fx-7.2", machine_types=QEMU10_TYPES
    )
    source = qemu()

    listened = run(destination, state="incoming")
    migrated = run(source, peer=listened.result["qemu"])

    assert listened.result["qemu"] == {
        "version": "10.0.2",
        "package": "fake 10.0",
        "machine": "pc-i440fx-7.2",
        "machine_types": sorted(QEMU10_TYPES),
    }
    assert not migrated.failed and migrated.result["status"] == "completed"
    assert migrated.result["qemu"] == {
        "version": "7.2.22",
        "package": "fake 7.2",
        "machine": "pc-i440fx-7.2",
    }
    assert source.names().count("query-version") == 1  # asked once, for the check and the result


def test_a_destination_of_another_machine_type_is_refused_before_anything_changes(run, qemu):
    """QEMU 10.0's default pc is pc-i440fx-10.0, which 7.2 cannot send to: the source
    names the newest type both know and changes nothing."""
    source = qemu()
    peer = {"version": "10.0.2", "machine": "pc-i440fx-10.0", "machine_types": QEMU10_TYPES}

    ended = run(source, peer=peer, capabilities={"multifd": True})

    assert ended.failed
    msg = ended.result["msg"]
    assert "machine type pc-i440fx-7.2 (QEMU 7.2.22)" in msg
    assert "waits with pc-i440fx-10.0 (QEMU 10.0.2)" in msg
    assert "vm_machine=pc-i440fx-7.2" in msg
    sent = source.names()
    assert "migrate" not in sent and "migrate-set-capabilities" not in sent
    assert ended.result["vm_status"] == "running"


def test_a_machine_type_the_destination_does_not_know_is_said_so(run, qemu):
    source = qemu(version=(10, 0, 2), machine="pc-i440fx-10.0", machine_types=QEMU10_TYPES)
    peer = {"version": "6.2.0", "machine": "pc-i440fx-6.2", "machine_types": ["pc-i440fx-6.2"]}

    ended = run(source, peer=peer)

    assert ended.failed and "migrate" not in source.names()
    assert (
        "does not know pc-i440fx-10.0; no pc-i440fx type is common to both" in (ended.result["msg"])
    )


def test_a_capability_one_version_lacks_is_refused_naming_that_version(run, qemu):
    source = qemu()

    ended = run(source, capabilities={"mapped-ram": True})

    assert ended.failed
    assert "mapped-ram not supported by this QEMU (7.2.22 at" in ended.result["msg"]
    assert "migrate" not in source.names()


# -- TLS ------------------------------------------------------------------------------


def credentials(directory, endpoint: str):
    """A directory with the PEM files QEMU reads for ENDPOINT (their content is QEMU's
    business: the fake only records the object)."""
    directory.mkdir(exist_ok=True)
    for name in ("ca-cert.pem", f"{endpoint}-cert.pem", f"{endpoint}-key.pem"):
        (directory / name).write_text("-----BEGIN-----\n")
    return str(directory)


def test_a_tls_destination_listens_with_the_server_credentials(run, qemu, tmp_path):
    destination = qemu(vm="inmigrate")
    tls = {"dir": credentials(tmp_path / "labdst", "server")}

    ended = run(destination, state="incoming", tls=tls)

    assert not ended.failed
    assert destination.objects == {
        "qmigrate-tls-server": {
            "qom-type": "tls-creds-x509",
            "id": "qmigrate-tls-server",
            "dir": tls["dir"],
            "endpoint": "server",
            "verify-peer": True,
        }
    }
    sent = destination.names()
    assert sent.index("object-add") < sent.index("migrate-set-parameters")
    assert destination.parameters["tls-creds"] == "qmigrate-tls-server"
    assert "tls-hostname" not in destination.parameters


def test_a_tls_source_sends_with_the_client_credentials_made_anew(run, qemu, tmp_path):
    source = qemu()
    tls = {"dir": credentials(tmp_path / "labsrc", "client"), "hostname": "labdst"}

    first = run(source, tls=tls)
    source.vm, source.started = "running", False  # the guest back, for a second run
    second = run(source, tls=tls)

    assert not first.failed and not second.failed
    assert source.objects["qmigrate-tls-client"]["endpoint"] == "client"
    # each run reads the files again: the object is deleted and added anew
    assert source.names().count("object-del") == 2 and source.names().count("object-add") == 2
    assert source.parameters["tls-creds"] == "qmigrate-tls-client"
    assert source.parameters["tls-hostname"] == "labdst"


def test_missing_credentials_are_refused_before_anything_changes(run, qemu, tmp_path):
    source = qemu()
    empty = tmp_path / "none"
    empty.mkdir()

    ended = run(source, tls={"dir": str(empty)})

    assert ended.failed
    assert (
        f"TLS: {empty} has no ca-cert.pem, client-cert.pem, client-key.pem" in (ended.result["msg"])
    )
    sent = source.names()
    assert not {"object-add", "migrate-set-parameters", "migrate"} & set(sent)


def test_a_failed_handshake_names_what_tls_needs_and_keeps_the_source(run, qemu, tmp_path):
    failure = {
        "status": "failed",
        "error-desc": "Certificate does not match the hostname labdst",
    }
    source = qemu(states=[active(1), failure])
    tls = {"dir": credentials(tmp_path / "labsrc", "client"), "hostname": "labdst"}

    ended = run(source, tls=tls)

    assert ended.failed
    msg = ended.result["msg"]
    assert "Certificate does not match the hostname labdst (TLS: both hosts' certificates" in msg
    assert "the destination's must name labdst)" in msg
    assert ended.result["vm_status"] == "running"
