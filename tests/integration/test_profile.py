"""Issue 5 on the lab: a profiled migration's series, figures and report, and what the
report says when the guest's TCP stream does not survive; issue 16: where its downtime
went (the anatomy), and QEMU's announcements as its announce-* parameters ask."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from labrun import ROOT, run_playbooks

pytestmark = pytest.mark.lab

LATEST = ROOT / "results" / "latest"
# Profiled migrations back and forth whose anatomy test_the_anatomy_holds_trial_after_trial
# checks; `make soak` runs 10 (make test's two profiled migrations check it once each way).
ANATOMY_TRIALS = int(os.environ.get("QMIGRATE_ANATOMY_TRIALS", "0"))


def latest_run() -> dict:
    return json.loads((LATEST / "run.json").read_text())


def in_namespace(host: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", host, *argv], check=True, timeout=30)


def test_profiled_migration_records_series_figures_and_report(pair):
    run = run_playbooks("migrate.yml")

    assert run.rc == 0, run.text[-4000:]
    record = latest_run()
    profile, derived = record["profile"], record["profile"]["derived"]
    assert record["verification"]["tcp_stream_survived"] is True
    # Series on one clock: the stream and the pings bracket the migrate command (t=0),
    # and the counters come from both hypervisors.
    intervals = profile["series"]["tcp"]["intervals"]
    assert intervals[0][0] < 0 < derived["phases"]["end"] < intervals[-1][1]
    assert len(profile["series"]["ping"]["replies"]) > 300
    for host in ("labsrc", "labdst"):
        assert len(profile["series"]["counters"][host]["ens1f0"]) > 50
    assert derived["window_covers_migration"]
    # The throughput dips while the guest moves, and comes back.
    tcp = derived["tcp"]
    assert tcp["survived"]
    assert tcp["lowest_interval_bps"] < tcp["before_bps"]
    assert tcp["after_bps"] > 0
    # Downtime from both sides, side by side in the report.
    assert derived["downtime"]["qemu_ms"] is not None
    assert derived["downtime"]["guest_observed_ms"] is not None
    assert 0.98 < derived["wire"]["wire_to_qemu_ratio"] < 1.1
    assert derived["link"]["capacity_bps"] > 0
    text = (LATEST / "report.md").read_text()
    assert "TCP stream survived" in text
    assert "| QEMU's downtime |" in text and "| guest-observed" in text
    check_anatomy(record)
    assert (
        "## Where the downtime goes" in text and "![Where the downtime goes](anatomy.png)" in text
    )

    # The report comes back from run.json alone.
    for name in ("report.md", "connection.png", "wire.png", "ram.png", "anatomy.png"):
        (LATEST / name).unlink()
    again = subprocess.run(
        [sys.executable, "-m", "qmigrate", "report", "latest", "--draw"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert (LATEST / "report.md").read_text() == text
    assert all(
        (LATEST / name).stat().st_size > 20000
        for name in ("connection.png", "wire.png", "anatomy.png")
    )


def check_anatomy(record: dict) -> dict:
    """Issue 16: where the downtime of RECORD's migration went, from QEMU's events on both
    sides, the captures on both NICs and the client's ping, on one clock."""
    profile = record["profile"]
    a = profile["derived"]["anatomy"]
    window = profile["window"]
    # Every mark, each within the probe window, in the order they must keep.
    assert a["measured"] and a["missing"] == [], a
    assert all(window["opened"] < t < window["closes"] for t in a["marks"].values()), a["marks"]
    assert a["in_order"], a["out_of_order"]
    # QEMU's downtime is its source's STOP to its completion (within 2 ms: whole ms), and
    # the destination's RESUME comes after the STOP. On this 2-core TCG machine it comes
    # 7-51 ms after the source's completion (the destination loading the last of the
    # state), so not within QEMU's downtime of the STOP: how far beyond is recorded.
    resume = a["resume"]
    assert resume["downtime_matches_events"], resume
    assert resume["stop_to_resume_ms"] > 0
    assert resume["beyond_downtime_ms"] == pytest.approx(
        resume["stop_to_resume_ms"] - resume["qemu_downtime_ms"]
    )
    # The parts add up to the guest-observed downtime within the interval between the
    # client's pings around the stop (the parts count from the stop, the client from its
    # next ping), and their usual round trip.
    check = a["sum_vs_guest"]
    assert abs(check["difference_ms"]) <= check["ping_interval_ms"], a
    assert sum(part["ms"] for part in a["parts"]) == pytest.approx(a["sum_ms"], abs=0.01)
    # Both clocks were measured against the source's, and the lab shares one.
    for host in (window["destination"], window["client"]):
        clock = a["clocks"][host]
        assert abs(clock["offset"]) <= clock["uncertainty"] + 0.0005, clock
    # The TCP stream came back at the destination; the setup phase's stall was measured.
    assert a["tcp"]["stalled_ms"] > 0
    assert a["setup"]["measured"] and a["setup"]["guest_silent"]["ms"] > 0
    return a


def test_announcements_follow_the_announce_parameters(pair):
    """QEMU announces the guest from the destination announce-rounds times (a RARP in its
    name, and the virtio-net guest's own gratuitous ARP each round), announce-initial ms
    apart at first; given as -e strings, as a user would."""
    migrate = run_playbooks("migrate.yml")
    assert migrate.rc == 0, migrate.text[-4000:]
    back = run_playbooks(
        "migrate.yml",
        extra_vars={
            "qmigrate_reverse": "true",
            "migration_parameters": {"announce-rounds": "2", "announce-initial": "20"},
        },
    )

    assert back.rc == 0, back.text[-4000:]
    record = latest_run()
    assert record["destination"] == "labsrc"
    assert record["parameters"]["announce-rounds"] == 2
    check_anatomy(record)
    runs = record["profile"]["series"]["captures"]["labsrc"]["out"]["runs"]
    rarps = [run[0] for run in runs["rarp"]]
    assert len(rarps) == 2, runs["rarp"]
    assert 0.015 <= rarps[1] - rarps[0] <= 0.2
    assert len(runs["garp"]) == 2, runs["garp"]


def test_a_stream_cut_at_the_destination_is_reported_as_broken(pair):
    """The destination's TAP left off the bridge: QEMU completes the migration, but the
    guest is cut off from the network on arrival."""
    in_namespace("labdst", "ip", "link", "set", "tap0", "nomaster")
    try:
        # playbooks/migrate_vms.yml only: the root migrate.yml's provisioning would mend it.
        run = run_playbooks("migrate_vms")
    finally:
        in_namespace("labdst", "ip", "link", "set", "tap0", "master", "br0")

    assert run.rc != 0
    assert "tcp_stream_survived" in run.text
    record = latest_run()
    assert record["status"] == "completed"
    assert record["verification"]["migration_completed"] is True
    assert record["verification"]["tcp_stream_survived"] is False
    assert record["verification"]["guest_answers_ping"] is False
    derived = record["profile"]["derived"]
    why = derived["tcp"]["why_not"]
    assert derived["tcp"]["survived"] is False
    assert any("no data" in reason or "iperf3" in reason for reason in why), why
    assert derived["ping"]["answered_after_migration"] is False
    text = (LATEST / "report.md").read_text()
    assert "TCP stream did NOT survive" in text
    assert "| survived | no |" in text


def test_a_failed_migration_is_profiled_and_the_stream_on_the_source_survives(pair):
    """Cancelled after 3 s (throttled to 4 MB/s): the source runs on, and so does the
    client's connection to its guest; the failed run still gets its profile."""
    run = run_playbooks(
        "migrate_vms",
        extra_vars={
            "migration_max_bandwidth": 4_000_000,
            "migration_timeout": 3,
            "probe_duration": 15,
        },
    )

    assert run.rc != 0
    record = latest_run()
    assert record["status"] == "failed"
    assert record["source_status"] == "running"
    derived = record["profile"]["derived"]
    assert derived["phases"]["status"] == "failed"
    assert derived["tcp"]["survived"] is True, derived["tcp"]["why_not"]
    assert record["verification"]["tcp_stream_survived"] is True
    assert derived["ping"]["answered_after_migration"] is True
    assert "TCP stream survived" in (LATEST / "report.md").read_text()


@pytest.mark.skipif(ANATOMY_TRIALS < 1, reason="QMIGRATE_ANATOMY_TRIALS is 0 (make soak sets it)")
def test_the_anatomy_holds_trial_after_trial(pair):
    """Issue 16, repeated: every profiled migration there and back has its anatomy, whole
    and in order; the spread of each part is printed."""
    parts: dict[str, list[float]] = {}
    for trial in range(ANATOMY_TRIALS):
        extra = {"qmigrate_reverse": "true"} if trial % 2 else None
        run = run_playbooks("migrate.yml", extra_vars=extra)
        assert run.rc == 0, f"trial {trial}: {run.text[-4000:]}"
        a = check_anatomy(latest_run())
        for part in a["parts"]:
            parts.setdefault(part["name"], []).append(part["ms"])
        parts.setdefault("guest_observed", []).append(a["guest_observed_ms"])
    for name, values in parts.items():
        print(f"anatomy {name}: {min(values):.1f}-{max(values):.1f} ms over {len(values)}")
