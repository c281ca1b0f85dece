"""Issue 12: migrations back and forth in a row, with one iperf3 stream from the client to
the guest running through all of them. Every migration must complete and verify, and
the stream must survive every one: one TCP connection for the whole run, carrying data
after each migration.

QMIGRATE_PINGPONG (default 2: there and back) sets how many; `make soak` runs 20.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from labrun import ROOT, run_playbooks

pytestmark = pytest.mark.lab

MIGRATIONS = int(os.environ.get("QMIGRATE_PINGPONG", "2"))
GUEST = "10.10.1.100"
# Bounds the stream whatever happens; it is stopped (SIGINT) after the last migration.
STREAM_LIMIT = 60 + 60 * MIGRATIONS
INTERVAL = 0.5


def test_migrations_back_and_forth_keep_one_stream_alive(pair):
    stream = subprocess.Popen(
        ["ip", "netns", "exec", "labclient", "iperf3", "-c", GUEST, "-J", "-t",
         str(STREAM_LIMIT), "-i", str(INTERVAL)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    windows = []  # (start, end) of each migrate.yml run, epoch seconds
    try:
        time.sleep(3)  # the stream is under way before the first migration
        assert stream.poll() is None, stream.communicate()
        for number in range(MIGRATIONS):
            began = time.time()
            run = run_playbooks(
                "migrate.yml",
                extra_vars={"migration_profile": False, "qmigrate_reverse": number % 2 == 1},
            )
            windows.append((began, time.time()))
            assert run.rc == 0, f"migration {number + 1}: {run.text[-4000:]}"
            record = json.loads((ROOT / "results" / "latest" / "run.json").read_text())
            assert record["status"] == "completed", f"migration {number + 1}: {record['error']}"
            assert all(v is not False for v in record["verification"].values()), record
            assert stream.poll() is None, f"the stream ended at migration {number + 1}"
        time.sleep(3)  # and carries data after the last one
    finally:
        if stream.poll() is None:
            stream.send_signal(signal.SIGINT)
        out, err = stream.communicate(timeout=30)

    assert out.strip(), f"iperf3 said nothing on stdout: {err[-2000:]}"
    report = json.loads(out)
    assert report.get("error") == "interrupt - the client has terminated", report.get("error")
    assert len(report["start"]["connected"]) == 1  # one TCP connection throughout
    started = report["start"]["timestamp"]["timesecs"]
    moving = [started + i["sum"]["end"] for i in report["intervals"] if i["sum"]["bytes"] > 0]
    for number, (_, end) in enumerate(windows):
        upto = windows[number + 1][0] if number + 1 < len(windows) else end + 3
        assert any(end - 1 <= t <= upto + 1 for t in moving), (
            f"no data moved after migration {number + 1}"
        )
