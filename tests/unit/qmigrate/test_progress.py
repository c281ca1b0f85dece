"""Live progress of a migration (src/qmigrate/progress.py), read from a fake HMP monitor on
a real UNIX socket."""

from __future__ import annotations

import pytest

from qmigrate.progress import MigrationWatch, ProgressReporter, monitor_tools
from tests import ROOT

MIB = 1024 * 1024


def info_migrate(status: str, remaining_kib: int = 0) -> str:
    return (
        f"Migration status: {status}\r\ntransferred ram: 1024 kbytes\r\n"
        f"remaining ram: {remaining_kib} kbytes\r\ntotal ram: 262144 kbytes\r\n"
        "throughput: 160.00 mbps"
    )


@pytest.fixture
def tools():
    return monitor_tools(ROOT)


def test_watch_reports_this_migration_only(tools, fake_hmp, tmp_path):
    server = fake_hmp(
        {
            "info migrate": [
                info_migrate("completed"),  # the migration that brought the VM here
                "",  # none yet: `info migrate` prints nothing
                info_migrate("active", 131072),
                info_migrate("completed"),
            ]
        }
    )
    watch = MigrationWatch(tools, tmp_path / "monitor.sock", timeout=2)

    points = [watch.poll() for _ in range(4)]
    watch.close()

    assert server.received == ["info migrate"] * 4
    assert points[:2] == [None, None]
    assert points[2] is not None and points[3] is not None
    assert (points[2]["status"], points[2]["remaining"]) == ("active", 128 * MIB)
    assert (points[2]["total"], points[2]["mbps"]) == (256 * MIB, 160.0)
    assert points[3]["status"] == "completed"


def test_watch_without_a_socket_reports_nothing(tools, tmp_path):
    watch = MigrationWatch(tools, tmp_path / "absent.sock", timeout=0.2)

    assert watch.poll() is None


def test_reporter_polls_once_the_source_is_known_and_ends_on_the_last_point():
    shown: list[dict] = []
    sources: list[str] = []

    class Watch:
        def poll(self):
            return {"status": "active"}

        def close(self):
            sources.append("closed")

    def factory(source):
        sources.append(source)
        return Watch()

    reporter = ProgressReporter(shown.append, factory)

    reporter.tick()
    reporter.source_known("labdst")
    reporter.source_known("labsrc")
    reporter.tick()
    reporter.finish({"status": "completed"})

    assert sources == ["labdst", "closed"]
    assert shown == [{"status": "active"}, {"status": "completed"}]


def test_reporter_that_showed_nothing_adds_no_final_point():
    shown: list[dict] = []
    reporter = ProgressReporter(shown.append, lambda source: pytest.fail("never polled"))

    reporter.finish({"status": "completed"})

    assert shown == []
