"""The benchmark's own arithmetic (bench/): the guest-observed downtime from ping's output,
CPU time per QEMU thread, and the medians, spreads and target ratios of its table. The
measurements themselves need the lab: `python -m bench`."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from types import SimpleNamespace

import pytest

from bench.campaigns import guest_label, measured
from bench.lab import busy_pct, cpu_times
from bench.measure import MachineSampler, ThreadSampler, cpu_usage, ping_gap, thread_times
from bench.overhead import task_times
from bench.table import groups, overhead_lines, render, spread, summarise
from qmigrate.campaign import parse


def ping_output(times: list[float], lost: tuple[float, float] = (0, 0), rtt: float = 0.4) -> str:
    """ping -D's output for pings sent at TIMES, those sent within LOST never answered."""
    lines = ["PING 10.10.1.100 (10.10.1.100) 56(84) bytes of data."]
    lines += [
        f"[{t + rtt / 1000:.6f}] 64 bytes from 10.10.1.100: icmp_seq={i} ttl=64 time={rtt} ms"
        for i, t in enumerate(times, 1)
        if not lost[0] <= t < lost[1]
    ]
    lines.append(
        f"[{times[-1] + 0.01:.6f}] From 10.10.1.3 icmp_seq=99 Destination Host Unreachable"
    )
    return "\n".join(lines) + "\n"


def test_ping_gap_is_the_guests_silence_at_the_switchover():
    """Pings every 10 ms; the migration from 100.0 (setup until 100.2) to 101.2 with 50 ms
    of downtime; those sent from 101.15 to 101.65 lost: 0.5 s of silence."""
    sends = [100 + 0.01 * i for i in range(200)]

    gap = ping_gap(ping_output(sends, lost=(101.145, 101.645)), 100.0, 101.2, 0.05, 0.2)

    assert gap == pytest.approx(500, abs=0.5)


def test_ping_gap_leaves_the_setup_phases_stall_and_the_clients_own_pauses_out():
    """No answer for 0.3 s during the setup phase, and a client that sent nothing for 0.4 s
    after the migration: neither is the switchover's."""
    sends = [100 + 0.01 * i for i in range(40)] + [100.8 + 0.01 * i for i in range(100)]

    gap = ping_gap(ping_output(sends, lost=(100.01, 100.3)), 100.0, 101.0, 0.02, 0.35)

    assert gap == pytest.approx(0, abs=0.5)


def test_ping_gap_needs_replies_after_the_migration():
    replies = [100 + 0.01 * i for i in range(50)]

    assert ping_gap(ping_output(replies), 100.2, 101, 0.01, 0.1) is None


def _spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def test_thread_times_name_this_process_threads():
    worker = threading.Thread(target=_spin, args=(0.3,), name="bench-spin")
    worker.start()
    try:
        times = thread_times(os.getpid())
    finally:
        worker.join()

    assert os.getpid() in times
    assert all(ran >= 0 and waited >= 0 for _, ran, waited in times.values())


def test_cpu_usage_counts_a_thread_that_ended_during_the_window():
    """QEMU's migration thread ends when the migration does; its CPU must still count."""
    samples = [
        (10.0, {1: ("qemu-system-x86", 5.0, 1.0), 2: ("CPU 0/TCG", 1.0, 0.0),
                3: ("CPU 1/TCG", 1.0, 0.0)}),
        (10.5, {1: ("qemu-system-x86", 5.1, 1.0), 2: ("CPU 0/TCG", 1.2, 0.1),
                3: ("CPU 1/TCG", 1.1, 0.0), 9: ("live_migration", 0.4, 0.1)}),
        (11.0, {1: ("qemu-system-x86", 5.2, 1.0), 2: ("CPU 0/TCG", 1.4, 0.1),
                3: ("CPU 1/TCG", 1.2, 0.0)}),
        (20.0, {1: ("qemu-system-x86", 9.0, 2.0), 2: ("CPU 0/TCG", 9.0, 1.0),
                3: ("CPU 1/TCG", 9.0, 1.0)}),
    ]  # fmt: skip

    used = cpu_usage(samples, start=10.0, end=11.0)

    assert used["cpu"] == {
        "CPU 0/TCG": 40.0,
        "CPU 1/TCG": 20.0,
        "live_migration": 40.0,
        "qemu-system-x86": 20.0,
    }
    assert used["wait"] == {"CPU 0/TCG": 10.0, "live_migration": 10.0}


def test_cpu_usage_of_a_window_shorter_than_the_interval_spans_the_samples_around_it():
    samples = [
        (10.0, {1: ("live_migration", 1.0, 0.0)}),
        (10.1, {1: ("live_migration", 1.05, 0.0)}),
        (10.2, {1: ("live_migration", 1.1, 0.0)}),
        (10.3, {1: ("live_migration", 1.2, 0.0)}),
    ]

    # 10.12-10.15 lies between the samples at 10.1 and 10.2: 0.05 s of CPU in 0.1 s
    assert cpu_usage(samples, 10.12, 10.15)["cpu"] == {"live_migration": 50.0}
    # past the last sample: up to it
    assert cpu_usage(samples, 10.25, 11.0)["cpu"] == {"live_migration": 100.0}
    assert cpu_usage([], 1.0, 2.0) == {"cpu": {}, "wait": {}}


def _hash_for(seconds: float) -> None:
    """Busy for SECONDS mostly outside the GIL (hashlib lets it go for large buffers), so
    that the sampler's thread, which needs the GIL, samples meanwhile as it would a QEMU."""
    data = bytes(4 << 20)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hashlib.sha256(data).digest()


def test_sampler_sees_a_thread_of_this_process_that_has_ended(tmp_path):
    pidfile = tmp_path / "qemu.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    sampler = ThreadSampler(pidfile, interval=0.02)
    start = time.time()
    worker = threading.Thread(target=_hash_for, args=(0.3,))
    worker.start()
    worker.join()
    end = time.time()
    sampler.stop()

    used = sampler.usage(start, end)

    assert len(sampler.samples) >= 2
    assert sum(used["cpu"].values()) > 0


def record(method: str, total: int, rep: int, **extra) -> dict:
    return {
        "part": "compare",
        "guest": "256 MiB idle",
        "method": method,
        "rep": rep,
        "status": "completed",
        "total_ms": total,
        "downtime_ms": 50,
        "guest_downtime_ms": 120.0,
        "transferred_mib": 100.0,
        "throughput_mbps": round(100 * 2**20 * 8 / (total / 1000) / 1e6, 1),
        "zero_pages": 3,
        "normal_pages": 1,
        "cpu": {"source": {"live_migration": 80.0, "CPU 0/TCG": 5.0, "CPU 1/TCG": 7.0}},
        "wait": {"source": {"live_migration": 20.0}},
        **extra,
    }


def test_spread_gives_median_and_range():
    assert spread([3, 1, 2, 10]) == {"n": 4, "median": 2.5, "min": 1, "max": 10}
    assert spread([]) is None


def test_rows_take_completed_runs_and_sum_threads_of_a_kind():
    records = [
        record("seed", 1200, 1),
        record("seed", 1400, 2),
        {**record("seed", 9999, 3), "status": "failed"},
    ]

    (row,) = groups(records)

    assert (row["runs"], row["completed"]) == (3, 2)
    assert row["total_ms"] == {"n": 2, "median": 1300, "min": 1200, "max": 1400}
    assert row["cpu_vcpus"]["median"] == 12.0
    assert row["wait_migration_thread"]["median"] == 20.0
    assert row["zero_page_fraction"]["median"] == 0.8
    assert row["statuses"] == ["completed", "failed"]


def test_targets_compare_seed_with_defaults_and_the_link():
    records = [record("seed", 1200, r) for r in (1, 2, 3)]
    records += [record("defaults", 400, r, overhead_s=1.0 + r, wall_s=2.0) for r in (1, 2, 3)]
    report = {
        "records": records,
        "link_mbps": [8000.0, 9000.0],
        "noop_wall_s": [4.0, 5.0],
        "campaigns": {
            "compare": {
                "campaign": "campaigns/compare.yml",
                "direction": "ping-pong",
                "runs": 6,
                "completed": 6,
                "per_migration_cost_s": 1.954,
            },
            "convergence": {
                "campaign": "campaigns/convergence.yml",
                "direction": "one-way",
                "runs": 3,
                "completed": 2,
                "per_migration_cost_s": 25.0,
            },
        },
    }

    targets = summarise(report)["targets"]

    assert targets["seed_over_defaults_total"]["value"] == 3.0
    assert targets["throughput_over_link"]["method"] == "defaults"
    assert targets["throughput_over_link"]["value"] == pytest.approx(2097.2 / 8500, abs=1e-3)
    # A campaign's run is a round of migrate.yml, not a migrate.yml: issue 13's overhead
    # comes from the overhead part alone; the campaign's cost is issue 14's target
    assert "overhead_s" not in targets
    assert targets["campaign_cost_s (compare)"] == {
        "value": 1.95,
        "target": "<= 2",
        "note": "campaigns/compare.yml: 6 of 6 runs completed; with the bench's ping and "
        "samplers beside it",
    }
    assert targets["campaign_cost_s (convergence)"]["target"] == "-"
    assert (
        "one-way: each run boots its guest anew"
        in (targets["campaign_cost_s (convergence)"]["note"])
    )
    assert targets["scale_4_over_1"]["value"] is None


def test_targets_take_the_overhead_parts_figures_when_it_ran():
    records = [record("defaults", 400, r, overhead_s=4.0 + r, wall_s=5.0) for r in (1, 2, 3)]
    report = {
        "records": records,
        "link_mbps": [8000.0],
        "noop_wall_s": [4.9, 5.0],
        "overhead": {"overhead_s": [2.8, 3.0, 3.4], "noop_wall_s": [2.5, 2.6, 2.7]},
    }

    targets = summarise(report)["targets"]

    assert targets["overhead_s"]["value"]["median"] == 3.0
    assert "overhead part" in targets["overhead_s"]["note"]
    assert targets["noop_wall_s"]["value"]["median"] == 2.6
    assert "overhead part" in targets["noop_wall_s"]["note"]


def test_table_has_a_row_per_method_and_names_what_failed():
    records = [record("defaults", 400, 1), {**record("multifd4", 1, 1)}]
    records[1].update(status="failed", total_ms=None)
    report = {
        "stamp": "20260101T000000Z",
        "machine": {
            "host": "h",
            "cpu": "c",
            "cores": 2,
            "memory_gib": 4,
            "qemu": "QEMU emulator version 7.2.22",
            "load_average": [1.0, 1.0, 1.0],
            "load_average_end": [2.0, 1.0, 1.0],
        },
        "records": records,
        "link_mbps": [8000.0],
    }
    report["summary"] = summarise(report)

    table = render(report)

    assert "| compare | 256 MiB idle | defaults | 1/1 | - | 400 |" in table
    assert "| compare | 256 MiB idle | multifd4 | 0/1 | - | - |" in table
    assert "not completed: failed" in table
    assert "scale_4_over_1: None, target <= 1.5 - not measured" in table


def test_scale_target_is_the_median_wall_time_of_four_pairs_over_one():
    def scale(pairs: int, wall: float, rep: int) -> dict:
        name = f"qmigrate defaults, {pairs} pair{'s' if pairs > 1 else ''}"
        return {**record(name, 500, rep), "part": "scale", "pairs": pairs, "wall_s": wall}

    records = [scale(1, 10.0, 1), scale(4, 14.0, 1), scale(1, 12.0, 2), scale(4, 18.0, 2)]
    records.append({**scale(4, 60.0, 3), "status": "failed"})  # not counted

    targets = summarise({"records": records, "link_mbps": []})["targets"]

    assert targets["scale_4_over_1"] == {
        "value": 1.45,
        "target": "<= 1.5",
        "note": "wall 16.0 s / 11.0 s",
    }


def test_machine_busy_share_comes_from_proc_stat():
    before = cpu_times()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # keep one core busy
        pass
    after = cpu_times()

    assert 0 <= before[0] <= before[1] and after[1] > before[1]
    assert 0 < busy_pct(before, after) <= 100
    assert busy_pct((100, 400), (250, 600)) == 75.0
    assert busy_pct((100, 400), (100, 400)) is None


PROFILE_TASKS_LOG = """\
PLAY RECAP *********************************************************************
labsrc                     : ok=20   changed=3    unreachable=0    failed=0

Tuesday 01 December 2026  16:02:10 +0000 (0:00:00.040)       0:00:05.123 ******
===============================================================================
migration : Migrate the VM and record its progress ---------------------- 1.23s
Check the variables of every host and the extra vars -------------------- 0.10s
vm : Tell whether this VM already runs as asked ------------------------- 0.45s
"""


def test_task_times_read_profile_tasks_summary_longest_first(tmp_path):
    log = tmp_path / "migrate.log"
    log.write_text(PROFILE_TASKS_LOG)

    times = task_times(log)

    assert [t["task"] for t in times] == [
        "migration : Migrate the VM and record its progress",
        "vm : Tell whether this VM already runs as asked",
        "Check the variables of every host and the extra vars",
    ]
    assert times[0]["seconds"] == 1.23


def test_overhead_lines_show_the_floor_the_targets_and_the_tasks():
    overhead = {
        "reps": 2,
        "floor_empty_s": [0.5, 0.6],
        "floor_module_s": [0.9, 1.0],
        "migrate_wall_s": [4.0, 5.0],
        "qemu_total_s": [0.7, 0.8],
        "overhead_s": [3.3, 4.2],
        "noop_wall_s": [2.0, 2.2],
        "overhead_over_floor": 6.8,
        "noop_over_floor": 3.8,
        "controller_cpu_pct": [30.0, 35.0],
        "machine_busy_pct": [70.0, 72.0],
        "tasks": [{"task": "migration : Migrate", "seconds": 1.2}],
        "noop_tasks": [{"task": "migration : Check that the guest runs", "seconds": 0.3}],
    }

    text = "\n".join(overhead_lines(overhead))

    assert "| floor: empty play on localhost | 0.55 (0.50-0.60) | 1 | - |" in text
    assert "| overhead: wall - QEMU | 3.75 (3.30-4.20) | 6.8 | <= 3 s |" in text
    assert "| no-op migrate.yml (already migrated) | 2.10 (2.00-2.20) | 3.8 | <= 2 s |" in text
    assert "32.5 (30-35) % of the machine's cores" in text
    assert "| migration : Migrate | 1.20 |" in text
    assert "Where one no-op migrate.yml's time went (profile_tasks; 1 tasks, 0.30 s" in text
    assert "| migration : Check that the guest runs | 0.30 |" in text
    assert overhead_lines(None) == []


def test_the_sampler_follows_the_pid_file_and_survives_its_absence(tmp_path):
    pidfile = tmp_path / "qemu.pid"  # no QEMU yet
    sampler = ThreadSampler(pidfile, interval=0.02)
    time.sleep(0.1)
    pidfile.write_text(f"{os.getpid()}\n")
    time.sleep(0.1)
    sampler.stop()

    assert sampler.samples[0][1] == {}
    assert os.getpid() in sampler.samples[-1][1]


def test_the_machine_sampler_gives_the_busy_share_of_a_stretch():
    sampler = MachineSampler(interval=0.05)
    sampler.stop()
    sampler.samples[:] = [(10.0, (100, 400)), (11.0, (150, 500)), (12.0, (250, 600))]

    assert sampler.busy_pct(10.0, 12.0) == 75.0
    assert sampler.busy_pct(10.5, 11.0) == 50.0  # from the sample before to the one after
    assert sampler.busy_pct(9.0, 11.0) is None  # not covered
    assert sampler.busy_pct(11.0, 13.0) is None


class Samples:
    """What a ThreadSampler gives, from SAMPLES given."""

    def __init__(self, samples):
        self.samples = samples

    def usage(self, start, end):
        return cpu_usage(self.samples, start, end)


def test_a_campaign_run_is_measured_from_its_records_times():
    campaign = parse(
        {
            "name": "c",
            "direction": "ping-pong",
            "methods": {"defaults": {}},
            "guests": {"idle": {"memory": "262148K"}},
        }
    )
    started = 1000.0  # the migrate command; QEMU's total 0.5 s
    record = {
        "migrate_started_epoch": str(started),
        "qemu": {
            "total_time_ms": 500,
            "downtime_ms": 40,
            "setup_time_ms": 100,
            "transferred_bytes": 50 * 2**20,
            "duplicate_pages": 9,
        },
        "timeline": [{"dirty_pages_rate": 256}, {"dirty_pages_rate": 512}, {}],
    }
    row = {
        "run_id": "idle-defaults-002",
        "guest": "idle",
        "method": "defaults",
        "rep": 1,
        "status": "completed",
        "error": "",
        # the way back: the guest leaves labdst
        "source": "labdst",
        "destination": "labsrc",
        "wall_s": 2.5,
        "overhead_s": 2.0,
        "total_ms": 500,
        "downtime_ms": 40,
        "passes": 3,
    }
    migration = {"live_migration": ("live_migration", 0.0, 0.0)}
    watch = SimpleNamespace(
        # pings every 10 ms, those sent in the switchover's 0.3 s lost
        ping_text=ping_output(
            [started - 1 + 0.01 * i for i in range(270)],
            lost=(started + 0.395, started + 0.695),
        ),
        threads={
            "labdst": Samples(
                [
                    (started - 0.1, {7: ("CPU 0/TCG", 1.0, 0.0)}),
                    (started + 0.4, {7: ("CPU 0/TCG", 1.1, 0.0), 9: migration["live_migration"]}),
                    (started + 0.5, {9: ("live_migration", 0.25, 0.05)}),
                ]
            ),
            "labsrc": Samples(
                [
                    (started - 0.1, {3: ("qemu-system-x86", 0.0, 0.0)}),
                    (started + 0.5, {3: ("qemu-system-x86", 0.2, 0.0)}),
                ]
            ),
        },
        machine=SimpleNamespace(busy_pct=lambda start, end: (start, end)),
    )

    out = measured("compare", campaign, row, record, watch, ended=2000.0, dirty_mib_s=None)

    assert out["guest"] == "idle (262148K, idle)" == guest_label(campaign, "idle")
    assert out["guest_downtime_ms"] == pytest.approx(300, abs=0.5)
    # Over the 0.6 s between the samples that bracket the migration's 0.5 s
    assert out["cpu"]["source"] == {"CPU 0/TCG": 16.7, "live_migration": 41.7}
    assert out["wait"]["source"] == {"live_migration": 8.3}
    assert out["cpu"]["destination"] == {"qemu-system-x86": 33.3}
    assert out["machine_busy_pct"] == (1997.5, 2000.0)  # its wall time, up to its end
    assert out["transferred_mib"] == 50.0 and out["throughput_mbps"] == 838.9
    assert out["qemu_dirty_mib_s"] == 1.5  # the median of 256 and 512 pages/s
    assert out["overhead_s"] == 2.0 and out["zero_pages"] == 9
    assert "guest_dirty_mib_s" not in out


def test_a_campaign_run_without_a_record_is_kept_as_not_completed():
    campaign = parse({"name": "c", "methods": {"m": {}}, "guests": {"g": {}}})
    row = {
        "run_id": "g-m-001",
        "guest": "g",
        "method": "m",
        "rep": 1,
        "status": "missing",
        "error": "",
        "source": None,
        "destination": None,
        "wall_s": None,
        "overhead_s": None,
        "total_ms": None,
        "downtime_ms": None,
        "passes": None,
    }
    watch = SimpleNamespace(ping_text="", threads={}, machine=None)

    out = measured("c", campaign, row, None, watch, ended=None, dirty_mib_s=None)

    assert out["status"] == "missing" and out["error"] is None
    assert "guest_downtime_ms" not in out and "machine_busy_pct" not in out
    assert out["guest"] == "g (the vm role's memory, idle)"


# -- what each QEMU supports (bench/qemu_support.py) ------------------------------------


def test_the_support_table_says_what_each_qemu_has_and_the_newest_type_both_know():
    from bench.qemu_support import table

    old = {
        "version": "7.2.22",
        "package": "Debian 7.2",
        "capabilities": ["compress", "multifd"],
        "parameters": ["multifd-compression", "tls-creds"],
        "machines": ["pc-i440fx-7.1", "pc-i440fx-7.2", "pc-q35-7.2"],
    }
    new = {
        "version": "10.0.2",
        "package": "Debian 10.0",
        "capabilities": ["mapped-ram", "multifd"],
        "parameters": ["multifd-compression", "tls-creds", "zero-page-detection"],
        "machines": ["pc-i440fx-10.0", "pc-i440fx-7.2", "pc-i440fx-9.2", "pc-q35-10.0"],
    }

    lines = table([old, new]).splitlines()

    assert lines[0] == "| | QEMU 7.2.22 | QEMU 10.0.2 |"
    assert "| compress (the old compression threads) | yes | no |" in lines
    assert "| mapped-ram (RAM at fixed offsets, file: URIs) | no | yes |" in lines
    assert "| zero pages found in multifd's channels | no | yes |" in lines
    i440fx = "| pc-i440fx machine types | pc-i440fx-7.1 to pc-i440fx-7.2 |"
    assert f"{i440fx} pc-i440fx-7.2 to pc-i440fx-10.0 |" in lines
    assert "| newest i440FX type all know | pc-i440fx-7.2 | pc-i440fx-7.2 |" in lines


def test_the_distributions_qemu_answers_what_it_supports():
    from bench.qemu_support import ask

    found = ask("qemu-system-x86_64", [])

    assert found["version"].count(".") == 2
    assert "multifd" in found["capabilities"] and "tls-creds" in found["parameters"]
    assert "pc-i440fx-" + ".".join(found["version"].split(".")[:2]) in found["machines"]
