"""What the qmigrate command draws (src/qmigrate/display.py): the progress bar, the status
line, and the runs table."""

from __future__ import annotations

import io

from qmigrate import api
from qmigrate.display import StatusLine, progress_line, runs_table

MIB = 1024 * 1024


def test_progress_line():
    point = {
        "status": "active",
        "transferred": 140 * MIB,
        "remaining": 134 * MIB,
        "total": 268 * MIB,
        "mbps": 2311.0,
    }

    assert progress_line(point, width=10) == (
        "[#####.....]  50%  active  140/268 MiB sent, 134 MiB left  2.3 Gbit/s"
    )


def test_progress_line_before_figures_and_when_done():
    early = progress_line({"status": "setup"}, width=4)
    done = progress_line(
        {"status": "completed", "transferred": 1, "remaining": 5, "total": 10, "mbps": 160.4},
        width=4,
    )

    assert early == "[....]   0%  setup  ?/? MiB sent, ? MiB left  ? Mbit/s"
    assert done.startswith("[####] 100%  completed")
    assert done.endswith("160 Mbit/s")


def test_progress_line_never_shows_100_percent_before_the_end():
    point = {"status": "active", "transferred": 9, "remaining": 1, "total": 1000, "mbps": 1}

    assert progress_line(point, width=10).startswith("[#########.]  99%")


def test_status_line_writes_nothing_off_a_terminal():
    stream = io.StringIO()
    line = StatusLine(stream, enabled=False)

    line.show("[###] 100%")
    line.keep()

    assert stream.getvalue() == ""


def test_runs_table_without_runs(tmp_path):
    assert runs_table(api.runs(tmp_path / "none")) == "no runs recorded"
