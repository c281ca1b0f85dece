"""module_utils/process.py: a process counts as exited once it is dead, reaped or not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from ansible.module_utils.process import exited, wait_exited


def test_a_running_process_has_not_exited():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert exited(proc.pid) is False
        assert wait_exited([proc.pid], 0.1) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_has_exited_before_it_is_reaped():
    # Its parent (this test) does not reap it until the end: it stays in /proc, state Z,
    # as QEMU does under an init that reaps late.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while not exited(proc.pid):
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert os.path.exists(f"/proc/{proc.pid}")  # not reaped: still there
        assert wait_exited([proc.pid], 5) == []
    finally:
        proc.wait()


def test_no_such_process_has_exited():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()

    assert exited(proc.pid) is True
