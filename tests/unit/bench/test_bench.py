"""The benchmark's own arithmetic (bench/): the guest-observed downtime from ping's output,
CPU time per QEMU thread, and the medians, spreads and target ratios of its table. The
measurements themselves need the lab: `python -m bench`."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench.lab import busy_pct, cpu_times
from bench.measure import ThreadSampler, cpu_usage, ping_gap, thread_times
from bench.overhead import task_times
from bench.table import groups, overhead_lines, render, spread, summarise


def ping_output(times: list[float]) -> str:
    lines = ["PING 10.10.1.100 (10.10.1.100) 56(84) bytes of data."]
    lines += [
        f"[{t:.6f}] 64 bytes from 10.10.1.100: icmp_seq={i} ttl=64 time=0.4 ms"
        for i, t in enumerate(times, 1)
    ]
    lines.append(
        f"[{times[-1] + 0.01:.6f}] From 10.10.1.3 icmp_seq=99 Destination Host Unreachable"
    )
    return "\n".join(lines) + "\n"


def test_ping_gap_is_the_longest_silence_around_the_migration_less_one_interval():
    before = [100 + 0.01 * i for i in range(100)]  # replies every 10 ms up to 100.99
    after = [101.5 + 0.01 * i for i in range(50)]  # silent for 0.51 s, then replies again

    gap = ping_gap(ping_output(before + after), start=100.5, end=101.2)

    assert gap == pytest.approx(500, abs=0.5)


def test_ping_gap_ignores_silences_outside_the_migration():
    replies = [100 + 0.01 * i for i in range(50)] + [102 + 0.01 * i for i in range(300)]

    gap = ping_gap(ping_output(replies), start=103, end=104)

    assert gap == pytest.approx(0, abs=0.5)


def test_ping_gap_needs_replies_on_both_sides():
    replies = [100 + 0.01 * i for i in range(50)]

    assert ping_gap(ping_output(replies), start=100.2, end=101) is None
    assert ping_gap(ping_output(replies), start=99, end=99.5) is None


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


def test_sampler_sees_a_thread_of_this_process_that_has_ended():
    sampler = ThreadSampler(os.getpid(), interval=0.02)
    start = time.time()
    worker = threading.Thread(target=_spin, args=(0.2,))
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
        "cpu": {"labsrc": {"live_migration": 80.0, "CPU 0/TCG": 5.0, "CPU 1/TCG": 7.0}},
        "wait": {"labsrc": {"live_migration": 20.0}},
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
    records = [record("seed (HMP, QEMU defaults)", 1200, r) for r in (1, 2, 3)]
    records += [
        record("qmigrate defaults", 400, r, overhead_s=2.0 + r, wall_s=5.0) for r in (1, 2, 3)
    ]
    report = {"records": records, "link_mbps": [8000.0, 9000.0], "noop_wall_s": [4.0, 5.0]}

    targets = summarise(report)["targets"]

    assert targets["seed_over_defaults_total"]["value"] == 3.0
    assert targets["throughput_over_link"]["method"] == "qmigrate defaults"
    assert targets["throughput_over_link"]["value"] == pytest.approx(2097.2 / 8500, abs=1e-3)
    assert targets["overhead_s"]["value"] == 4.0
    assert targets["scale_4_over_1"]["value"] is None


def test_targets_take_the_overhead_parts_figures_when_it_ran():
    records = [
        record("qmigrate defaults", 400, r, overhead_s=4.0 + r, wall_s=5.0) for r in (1, 2, 3)
    ]
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
    records = [record("qmigrate defaults", 400, 1), {**record("qmigrate multifd 4", 1, 1)}]
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

    assert "| compare | 256 MiB idle | qmigrate defaults | 1/1 | - | 400 |" in table
    assert "| compare | 256 MiB idle | qmigrate multifd 4 | 0/1 | - | - |" in table
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
