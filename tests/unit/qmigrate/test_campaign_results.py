"""A campaign's rows, statistics and summary (src/qmigrate/campaign_results.py), from
records shaped as run.json is."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from qmigrate.campaign_results import (
    COLUMNS,
    plot_metrics,
    row,
    spread,
    summary,
    summary_markdown,
    to_csv,
)


def record(total_ms: int, *, status: str = "completed", profiled: bool = False) -> dict:
    made = {
        "status": status,
        "source": "labsrc",
        "destination": "labdst",
        "error": "" if status == "completed" else "the migration timed out",
        "qemu": {
            "total_time_ms": total_ms,
            "downtime_ms": 30,
            "setup_time_ms": 5,
            "transferred_bytes": 114_000_000,
            "throughput_mbps": 1300.5,
            "dirty_sync_count": 3,
        },
        "verification": {"destination_running": True, "guest_answers_ping": None},
    }
    if profiled:
        made["profile"] = {
            "window": {"duration": 15.0},
            "derived": {
                "downtime": {"guest_observed_ms": 85.2},
                "ping": {"lost_around_migration": 4},
                "tcp": {"stalled_seconds": 0.3, "survived": True},
                "anatomy": {
                    "resume": {"beyond_downtime_ms": 12.5},
                    "parts": [
                        {"name": "until_announced", "ms": 0.3},
                        {"name": "until_guest_spoke", "ms": 38.9},
                    ],
                    "tcp": {"stalled_ms": 137.1},
                    "setup": {"ping": {"unanswered_ms": 225.7}},
                },
            },
        }
    return made


def entry(guest: str, method: str, rep: int, wall: float | None = 4.0) -> dict:
    return {
        "run_id": f"{guest}-{method}-{rep:03d}",
        "number": rep,
        "guest": guest,
        "method": method,
        "rep": rep,
        "wall_s": wall,
    }


def test_a_row_has_every_column_from_the_record_and_the_campaign():
    got = row(entry("idle", "seed", 1, wall=20.0), record(900, profiled=True))

    assert list(got) == list(COLUMNS)
    assert got["total_ms"] == 900 and got["passes"] == 3 and got["throughput_mbps"] == 1300.5
    assert got["guest_downtime_ms"] == 85.2 and got["pings_lost"] == 4
    assert got["tcp_stalled_s"] == 0.3 and got["tcp_survived"] is True
    # where the downtime went (the anatomy)
    assert got["beyond_downtime_ms"] == 12.5 and got["announced_ms"] == 0.3
    assert got["guest_spoke_ms"] == 38.9 and got["tcp_back_ms"] == 137.1
    assert got["setup_stall_ms"] == 225.7
    # what running it cost: the wall time less QEMU's time and the probe window
    assert got["overhead_s"] == pytest.approx(20.0 - 0.9 - 15.0)
    assert got["verified"] is True and got["error"] == ""


def test_a_run_without_probes_or_record_leaves_those_columns_empty():
    plain = row(entry("idle", "seed", 1, wall=4.0), record(700))
    missing = row(entry("idle", "seed", 2, wall=None), None)

    assert plain["guest_downtime_ms"] is None and plain["overhead_s"] == pytest.approx(3.3)
    assert missing["status"] == "missing" and missing["verified"] is False
    assert missing["overhead_s"] is None


def test_a_failed_run_has_no_overhead_and_says_why():
    failed = row(entry("idle", "seed", 1), record(700, status="failed"))

    assert failed["overhead_s"] is None
    assert failed["error"] == "the migration timed out"


def test_the_csv_has_the_documented_header_and_one_line_per_run():
    rows = [row(entry("idle", "seed", n), record(700 + n)) for n in (1, 2)]

    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))

    assert list(parsed[0]) == list(COLUMNS)
    assert [p["total_ms"] for p in parsed] == ["701", "702"]
    assert parsed[0]["guest_downtime_ms"] == ""


def test_spread_gives_the_median_range_and_an_interval_around_the_median():
    values = [10.0, 12.0, 11.0, 30.0, 9.0, 10.5, 11.5]

    got = spread(values)

    assert (got.n, got.median, got.low, got.high) == (7, statistics.median(values), 9.0, 30.0)
    assert got.ci is not None and got.ci[0] <= got.median <= got.ci[1]
    assert got.ci[1] < 30.0  # one outlier does not stretch the median's interval to it
    assert spread(values) == got  # the same records, the same figures


def test_spread_of_few_values_has_no_interval():
    assert spread([]) is None
    assert spread([5.0, 7.0]).ci is None


def test_summary_per_cell_with_ratios_to_the_baseline_on_the_same_guest():
    rows = [row(entry("idle", "seed", n), record(1000 + n)) for n in range(1, 4)]
    rows += [row(entry("idle", "multifd", n), record(500 + n)) for n in range(1, 4)]
    rows += [row(entry("idle", "multifd", 4), record(0, status="failed"))]

    cells = summary(rows, "seed")

    seed, multifd = cells["idle"]["seed"], cells["idle"]["multifd"]
    assert (multifd["runs"], multifd["completed"], multifd["failed"]) == (4, 3, 1)
    assert multifd["metrics"]["total_ms"].median == 502
    assert multifd["ratio"]["total_ms"] == pytest.approx(502 / 1002, abs=1e-3)
    assert seed["ratio"]["total_ms"] == 1.0
    assert multifd["metrics"]["guest_downtime_ms"] is None


def test_summary_markdown_shows_each_guest_its_cells_and_the_failures():
    rows = [row(entry("idle", "seed", n, 2.0 + n), record(1000 + n)) for n in range(1, 4)]
    rows += [row(entry("idle", "multifd", n, 1.0 + n), record(500 + n)) for n in range(1, 4)]
    rows += [row(entry("idle", "multifd", 4, 60.0), record(0, status="failed"))]

    text = summary_markdown("compare", "Seed against multifd.", rows, "seed")

    # The wall times less QEMU's: 1.999, 2.998, 3.997 (seed) and 1.499, 2.498, 3.497;
    # the failed run not counted
    assert "over all 6 completed runs: median 2.75 s (1.5-4)." in text, text.splitlines()[4]

    assert text.startswith("# Campaign compare\n\nSeed against multifd.")
    assert "## idle" in text
    line = next(x for x in text.splitlines() if x.startswith("| multifd "))
    assert "| 3/4 |" in line and "502 (501-503)" in line and "x0.50" in line
    assert "- idle-multifd-004: failed: the migration timed out" in text


def test_one_comparison_plot_per_metric_with_figures(tmp_path):
    rows = [row(entry("idle", "seed", n), record(1000 + n)) for n in range(1, 4)]
    rows += [row(entry("idle", "multifd", n), record(500 + n, profiled=True)) for n in (1, 2)]
    rows += [row(entry("big", "seed", 1), record(2000))]
    rows += [row(entry("big", "multifd", 1), record(0, status="failed"))]

    written = plot_metrics(rows, tmp_path)

    # every metric has figures in these records; the per-migration cost from wall times
    assert written[:3] == ["total_ms.png", "downtime_ms.png", "guest_downtime_ms.png"]
    assert "overhead_s.png" in written
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = summary_markdown("c", "", rows, "seed", written)
    assert "![QEMU total time](total_ms.png)" in text


def test_no_plot_for_a_metric_without_figures(tmp_path):
    rows = [row(entry("idle", "seed", n), record(1000 + n)) for n in (1, 2)]

    written = plot_metrics(rows, tmp_path)

    assert "guest_downtime_ms.png" not in written and "tcp_stalled_s.png" not in written
    assert not (tmp_path / "guest_downtime_ms.png").exists()
