"""qemu_guest (library/qemu_guest.py): a VM's run state from a fake QMP monitor on a real
socket, and its guest's heartbeat from a serial log that a thread writes as a guest would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from library import qemu_guest


def beat(log: Path, first: int, count: int, pause: float) -> threading.Thread:
    """A guest that starts talking after PAUSE s: COUNT heartbeats from FIRST, 0.1 s apart."""

    def talk() -> None:
        time.sleep(pause)
        for n in range(first, first + count):
            with log.open("a") as f:
                f.write(f"qmigrate-heartbeat {n} {n / 10:.1f}\n")
            time.sleep(0.1)

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    return thread


def test_a_running_guest_is_waited_for_until_its_heartbeat_advances(qemu, run_main, tmp_path):
    fake = qemu(vm="running")
    log = tmp_path / "serial.log"
    log.write_text("")  # the destination's log exists, empty, until the guest resumes
    talker = beat(log, first=500, count=10, pause=0.3)

    result = run_main(qemu_guest, {"socket": fake.path, "serial_log": str(log), "timeout": 5})
    talker.join()

    assert result["vm_status"] == "running"
    assert result["first"] == 500
    assert result["latest"] > 500
    assert result["changed"] is False


def test_a_vm_that_does_not_run_is_reported_at_once(qemu, run_main, tmp_path):
    fake = qemu(vm="postmigrate")
    log = tmp_path / "serial.log"
    log.write_text("qmigrate-heartbeat 7 0.7\n")

    result = run_main(qemu_guest, {"socket": fake.path, "serial_log": str(log), "timeout": 30})

    assert result["vm_status"] == "postmigrate"
    assert (result["first"], result["latest"]) == (7, 7)
    assert result["waited"] < 10  # not the 30 s timeout


def test_a_silent_guest_is_reported_after_the_timeout(qemu, run_main, tmp_path):
    fake = qemu(vm="running")
    log = tmp_path / "serial.log"
    log.write_text("booting\n")

    result = run_main(qemu_guest, {"socket": fake.path, "serial_log": str(log), "timeout": 0.5})

    assert result["first"] is None and result["latest"] is None
    assert result["waited"] >= 0.5  # it waited the whole timeout
