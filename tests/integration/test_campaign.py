"""Issue 14: campaigns on the lab, run as a user runs them (`qmigrate campaign run`).

A small ping-pong campaign (2 methods x 2 repetitions) whose CSV and summary must agree
with its run.json files; a campaign with a run that cannot finish in its timeout, which
is recorded while the campaign completes; a one-way campaign of a dirtying guest, which
checks the lab and provisioning before its first run only; and a campaign stopped by
SIGINT after its first run, which a second `campaign run --into` completes without doing
that run again.
With QMIGRATE_CAMPAIGN set (`make soak` sets campaigns/compare.yml), a shipped campaign
runs whole too.
"""

from __future__ import annotations

import csv
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labrun import ROOT, run_playbooks

pytestmark = pytest.mark.lab

GUEST = {"idle": {"memory": "262148K"}}
SHIPPED = os.environ.get("QMIGRATE_CAMPAIGN", "")


@pytest.fixture(scope="module", autouse=True)
def lab(provisioned):
    """The shared lab; each campaign boots its guest anew, and the VMs are stopped after."""
    yield
    stop = subprocess.run(
        [sys.executable, "-c", "from qmigrate import api; api.stop_vms()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert stop.returncode == 0, stop.stderr[-3000:]


def qmigrate(*args: str) -> list[str]:
    return [sys.executable, "-m", "qmigrate", "--project", str(ROOT), *args]


def campaign_file(tmp_path: Path, **data) -> Path:
    path = tmp_path / f"{data['name']}.yml"
    path.write_text(json.dumps({"guests": GUEST, "probes": False, **data}))
    return path


def records(directory: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in directory.glob("*/run.json")
        if not p.parent.is_symlink()  # latest, as in any results directory
    }


def rows(directory: Path) -> list[dict]:
    return list(csv.DictReader((directory / "runs.csv").open()))


def run_campaign(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        qmigrate("campaign", "run", *args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def test_a_ping_pong_campaign_records_every_run_and_sums_them_up(tmp_path):
    path = campaign_file(
        tmp_path,
        name="small",
        repetitions=2,
        direction="ping-pong",
        baseline="defaults",
        methods={"defaults": {}, "multifd2": {"multifd_channels": 2}},
    )
    into = tmp_path / "small"

    done = run_campaign(str(path), "--into", str(into))

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "run 4 of 4: multifd2 on idle, repetition 2: completed" in done.stderr
    found = records(into)
    assert sorted(found) == [
        "idle-defaults-001",
        "idle-defaults-002",
        "idle-multifd2-001",
        "idle-multifd2-002",
    ]
    assert all(
        r["status"] == "completed" and all(r["verification"].values()) for r in found.values()
    )
    # back and forth, in the plan's order
    ways = [
        (found[r]["source"], found[r]["destination"])
        for r in (
            "idle-defaults-001",
            "idle-multifd2-001",
            "idle-defaults-002",
            "idle-multifd2-002",
        )
    ]
    assert ways == [("labsrc", "labdst"), ("labdst", "labsrc")] * 2
    assert found["idle-multifd2-001"]["capabilities"]["multifd"] is True
    table = rows(into)
    assert [r["run_id"] for r in table] == [
        "idle-defaults-001",
        "idle-multifd2-001",
        "idle-defaults-002",
        "idle-multifd2-002",
    ]
    for entry in table:
        qemu = found[entry["run_id"]]["qemu"]
        assert int(entry["total_ms"]) == qemu["total_time_ms"]
        assert int(entry["transferred_bytes"]) == qemu["transferred_bytes"]
        assert float(entry["wall_s"]) > qemu["total_time_ms"] / 1000
        assert entry["verified"] == "True"
    median = statistics.median(
        found[r]["qemu"]["total_time_ms"] for r in ("idle-multifd2-001", "idle-multifd2-002")
    )
    summary = (into / "summary.md").read_text()
    line = next(x for x in summary.splitlines() if x.startswith("| multifd2 "))
    assert f"| 2/2 | {median:.0f} (" in line
    state = json.loads((into / "campaign.json").read_text())
    assert [p["run_id"] for p in state["plan"]] == [r["run_id"] for r in table]
    # the boot with the first, then the other three as the rounds of one playbook run
    assert [state["runs"][r["run_id"]]["stretch"] for r in table] == [1, 2, 2, 2]


def test_a_run_that_cannot_finish_is_recorded_and_the_campaign_completes(tmp_path):
    """From Ansible this time: campaign.yml. Each failed round leaves the guest where it
    was, and the round after it goes the same way again."""
    path = campaign_file(
        tmp_path,
        name="hopeless",
        repetitions=2,
        direction="ping-pong",
        methods={
            "defaults": {},
            # 1 MB/s for ~100 MiB cannot finish in 2 s: cancelled, the source runs on
            "starved": {"max_bandwidth": 1_000_000, "timeout": 2},
        },
    )
    into = tmp_path / "hopeless"

    run = run_playbooks(
        "campaign.yml", extra_vars={"campaign": str(path), "campaign_into": str(into)}
    )

    assert run.rc == 2, run.text[-4000:]
    assert "campaign hopeless: run 2 of 4: starved on idle, repetition 1: failed" in run.stderr
    (result,) = run.task_results("Check the campaign file and run its migrations")
    assert (result["completed"], result["not_completed"]) == (2, 2)
    assert "2 of 4 runs did not complete" in result["msg"]
    found = records(into)
    for failed in ("idle-starved-001", "idle-starved-002"):
        assert found[failed]["status"] == "failed"
        assert found[failed]["source_status"] == "running"
    ways = [
        (found[r]["source"], found[r]["destination"], found[r]["status"])
        for r in ("idle-defaults-001", "idle-starved-001", "idle-defaults-002", "idle-starved-002")
    ]
    assert ways == [
        ("labsrc", "labdst", "completed"),
        ("labdst", "labsrc", "failed"),
        ("labdst", "labsrc", "completed"),  # the same way again
        ("labsrc", "labdst", "failed"),
    ]
    assert [r["status"] for r in rows(into)] == ["completed", "failed", "completed", "failed"]
    assert "idle-starved-001: failed" in (into / "summary.md").read_text()


def plays_with_tasks(artifacts: Path) -> set[str]:
    """The plays of one playbook run (ansible-runner's artifacts) that ran a task."""
    plays = set()
    for path in (artifacts / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        if event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
            plays.add(event["event_data"].get("play"))
    return plays


def test_a_one_way_campaign_of_a_dirtying_guest_prepares_the_lab_once(tmp_path):
    """Each run boots the guest anew, once its workload reports its rate (a boot that
    waited for a line the guest never prints would fail the run); the first run checks
    the lab and provisioning, the second skips them (qmigrate_prepare=skip)."""
    path = campaign_file(
        tmp_path,
        name="dirtying",
        repetitions=2,
        direction="one-way",
        methods={"defaults": {}},
        guests={"dirty": {"memory": "262148K", "workload": {"dirty": 16, "dirty_set": 32}}},
    )
    into = tmp_path / "dirtying"
    cache = tmp_path / "cache"  # this campaign's playbook runs' artifacts alone

    done = subprocess.run(
        qmigrate("campaign", "run", str(path), "--into", str(into)),
        cwd=ROOT,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = records(into)
    for run_id in ("dirty-defaults-001", "dirty-defaults-002"):
        assert found[run_id]["status"] == "completed"
        assert (found[run_id]["source"], found[run_id]["destination"]) == ("labsrc", "labdst")
        assert all(found[run_id]["verification"].values())
    migrations = sorted((cache / "qmigrate" / "artifacts").glob("*-migrate-*"))
    assert len(migrations) == 2
    first, second = (plays_with_tasks(a) for a in migrations)
    provisioning = "Install QEMU and the study's tools on the hypervisors"
    launching = "Start the source VM and the destination waiting for it"
    assert provisioning in first and launching in first
    assert provisioning not in second and launching in second


def test_a_campaign_stopped_by_sigint_is_completed_by_running_it_again(tmp_path):
    path = campaign_file(
        tmp_path,
        name="stopped",
        repetitions=3,
        direction="ping-pong",
        methods={"defaults": {}},
    )
    into = tmp_path / "stopped"
    proc = subprocess.Popen(
        qmigrate("campaign", "run", str(path), "--into", str(into)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        # As from a terminal: a suite started in the background (a shell's `&`) would
        # hand the command SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    deadline = time.monotonic() + 600
    try:
        while "run 1 of 3" not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([proc.stderr], [], [], 5)
            if ready:
                line = proc.stderr.readline()
                assert line or proc.poll() is None, seen
                seen += line
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    first = into / "idle-defaults-001" / "run.json"
    assert json.loads(first.read_text())["status"] == "completed"
    kept = first.stat().st_mtime_ns

    done = run_campaign(str(path), "--into", str(into))

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "run 1 of 3: defaults on idle, repetition 1: skipped" in done.stderr
    assert first.stat().st_mtime_ns == kept
    assert [r["status"] for r in rows(into)] == ["completed"] * 3


@pytest.mark.skipif(not SHIPPED, reason="make soak runs a whole shipped campaign")
def test_a_shipped_campaign_completes_in_one_command(tmp_path):
    from qmigrate.campaign import load

    planned = load(ROOT / SHIPPED)
    into = tmp_path / planned.name

    done = run_campaign(str(ROOT / SHIPPED), "--into", str(into), timeout=7200)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = rows(into)
    assert len(table) == len(planned.plan())
    assert all(r["status"] == "completed" and r["verified"] == "True" for r in table)
    costs = sorted(float(r["overhead_s"]) for r in table)
    print(
        f"{SHIPPED}: {len(table)} runs, per-migration cost median {statistics.median(costs):.2f} s"
    )
    assert (into / "total_ms.png").exists() and "![QEMU total time]" in (
        into / "summary.md"
    ).read_text()
