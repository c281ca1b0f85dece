"""Unit tests for the profile of a migration (src/qmigrate/profile.py) and its report
(report.py): parsing the probes' raw output, the derived figures recomputed from a
run.json stored from a real lab run, and the report drawn from it."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from qmigrate import cli
from qmigrate.anatomy import lost_send_times
from qmigrate.profile import (
    derive,
    parse_counters,
    parse_iperf,
    parse_ping,
    phase_spans,
    phases,
    ping_figures,
    profile_run,
    summary,
    verification,
)
from qmigrate.report import write_report
from tests.unit import DATA

# A profiled migration on the lab (labsrc -> labdst, 256 MiB TCG guest): run.json as the
# probe role left it, and the probes' raw output in probe/.
RUN = DATA / "profiled-run"
T0 = 1795651600.0


@pytest.fixture
def record() -> dict:
    return json.loads((RUN / "run.json").read_text())


def _roundtrip(value):
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------------------- stored run


def test_derived_figures_are_recomputed_from_the_stored_record(record):
    stored = record["profile"]["derived"]
    assert _roundtrip(derive(record)) == stored


def test_the_stored_run_shows_a_migration_the_stream_survived(record):
    d = derive(record)
    assert record["status"] == "completed"
    assert d["window_covers_migration"]
    assert d["tcp"]["survived"] and d["tcp"]["why_not"] == []
    assert record["verification"]["tcp_stream_survived"] is True
    # The guest stopped answering for about QEMU's downtime, and never for long.
    assert d["downtime"]["qemu_ms"] > 0
    assert 0 <= d["downtime"]["guest_observed_ms"] < 2000
    assert d["ping"]["lost_around_migration"] >= 0
    # Bytes on the wire match what QEMU says it sent, within the headers' overhead.
    assert 0.98 < d["wire"]["wire_to_qemu_ratio"] < 1.1
    assert 0 < d["link"]["fraction_of_link"] < 1


def test_a_same_host_migration_is_not_compared_with_a_link(record):
    same = copy.deepcopy(record)
    same["profile"]["window"]["destination"] = same["profile"]["window"]["source"]

    d = derive(same)

    assert d["link"]["fraction_of_link"] is None and d["link"]["capacity_bps"] is None
    assert d["link"]["migration_average_bps"] == derive(record)["link"]["migration_average_bps"]
    assert d["wire"]["same_host"] is True
    assert any("crossed no link" in line for line in summary(d))
    assert not any("of the link" in line for line in summary(d))


def test_ingest_rebuilds_the_series_from_the_raw_probe_output(record, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    bare = copy.deepcopy(record)
    del bare["profile"]
    del bare["verification"]["tcp_stream_survived"]
    (run / "run.json").write_text(json.dumps(bare))
    found = profile_run(run, draw=False)
    rebuilt = json.loads((run / "run.json").read_text())
    assert rebuilt["profile"]["series"] == record["profile"]["series"]
    assert rebuilt["profile"]["derived"] == record["profile"]["derived"]
    assert found["verification"] == {"tcp_stream_survived": True}
    assert rebuilt["verification"]["migration_completed"] is True


def test_each_hosts_times_are_corrected_by_its_measured_clock_offset(record, tmp_path):
    """A client whose clock runs 0.25 s ahead of the source's, and a destination 0.1 s
    behind: their series land where the source's clock puts them."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    for name, offset in (("client-labclient.json", 0.25), ("counters-labdst.json", -0.1)):
        path = run / "probe" / name
        raw = json.loads(path.read_text())
        raw["clock"] = {**raw["clock"], "offset": offset}
        path.write_text(json.dumps(raw))

    profile_run(run, draw=False)

    series = json.loads((run / "run.json").read_text())["profile"]["series"]
    stored = record["profile"]["series"]
    old_client = stored["clocks"]["labclient"]["offset"]
    old_dst = stored["clocks"]["labdst"]["offset"]
    assert series["clocks"]["labclient"]["offset"] == 0.25
    first, was = series["ping"]["replies"][0][0], stored["ping"]["replies"][0][0]
    assert first == pytest.approx(was - (0.25 - old_client), abs=2e-6)
    resume = [e["t"] for e in series["destination_events"]["events"] if e["event"] == "RESUME"]
    was = [e["t"] for e in stored["destination_events"]["events"] if e["event"] == "RESUME"]
    assert resume[0] == pytest.approx(was[0] + 0.1 + old_dst, abs=2e-6)
    rarp = series["captures"]["labdst"]["out"]["runs"]["rarp"][0][0]
    was = stored["captures"]["labdst"]["out"]["runs"]["rarp"][0][0]
    assert rarp == pytest.approx(was + 0.1 + old_dst, abs=2e-6)
    # The source's own series stay as they were.
    assert series["counters"]["labsrc"] == stored["counters"]["labsrc"]


def test_the_stored_run_has_its_downtime_anatomy(record):
    a = derive(record)["anatomy"]
    assert a["measured"] and a["in_order"] and a["sum_vs_guest"]["within_ping_interval"]
    assert a["resume"]["downtime_matches_events"]
    assert derive(record)["ping"]["guest_downtime_ms"] == a["guest_observed_ms"]


def test_a_stream_that_stops_at_the_switchover_did_not_survive(record):
    end = phases(record)["end"]
    tcp = record["profile"]["series"]["tcp"]
    for interval in tcp["intervals"]:
        if interval[0] >= end:
            interval[2], interval[3] = 0, 0.0
    d = derive(record)
    assert d["tcp"]["survived"] is False
    assert any("carried no data" in why for why in d["tcp"]["why_not"])
    assert "did NOT survive" in summary(d)[1]


def test_an_iperf3_error_means_the_stream_did_not_survive(record):
    tcp = record["profile"]["series"]["tcp"]
    tcp["rc"], tcp["error"] = -9, "iperf3 still running 20 s after it was started: killed"
    d = derive(record)
    assert d["tcp"]["survived"] is False
    assert "iperf3 exited with status -9" in d["tcp"]["why_not"]


def test_without_a_record_of_the_migration_there_are_no_phases():
    assert phase_spans(phases({})) == []


# ---------------------------------------------------------------------------- parsers


def test_parse_ping_takes_send_times_and_totals():
    text = "\n".join(
        [
            "PING 10.10.1.100 (10.10.1.100) 56(84) bytes of data.",
            f"[{T0 + 0.0105:.6f}] 64 bytes from 10.10.1.100: icmp_seq=1 ttl=64 time=0.500 ms",
            f"[{T0 + 0.0502:.6f}] 64 bytes from 10.10.1.100: icmp_seq=5 ttl=64 time=0.200 ms",
            f"[{T0 + 0.0201:.6f}] 64 bytes from 10.10.1.100: icmp_seq=2 ttl=64 time=0.100 ms",
            "--- 10.10.1.100 ping statistics ---",
            "5 packets transmitted, 3 received, 40% packet loss, time 40ms",
        ]
    )
    ping = parse_ping(text, T0)
    assert [r[1] for r in ping["replies"]] == [1, 2, 5]
    assert ping["replies"][0][0] == pytest.approx(0.010, abs=1e-6)
    assert ping["transmitted"] == 5 and ping["received"] == 3
    assert lost_send_times(ping["replies"]) == pytest.approx([0.030, 0.040], abs=1e-6)


def test_guest_observed_downtime_is_the_longest_gap_around_the_migration():
    # Pings every 10 ms; 0.50 s to 0.60 s unanswered (the switchover); another gap of
    # 2 s long before the migration does not count.
    times = [x / 100 for x in range(-400, -300)] + [x / 100 for x in range(-100, 300)]
    replies = [[t, n + 1, 0.3] for n, t in enumerate(times) if not 0.5 < t < 0.6]
    p = {"start": 0.0, "end": 0.55}
    figures = ping_figures({"replies": replies, "transmitted": 600, "received": 491}, p, 0.01)
    assert figures["gap_ms"] == pytest.approx(100.0)
    assert figures["guest_downtime_ms"] == pytest.approx(90.0)
    assert figures["lost_around_migration"] == 9
    assert figures["lost"] == 109
    assert figures["answered_after_migration"]


def test_parse_iperf_places_intervals_on_the_migration_clock():
    doc = {
        "launched": T0 - 2.0,
        "rc": 0,
        "output": {
            "start": {"connected": [{"socket": 5}], "test_start": {"duration": 1}},
            "intervals": [
                {"sum": {"start": 0.0, "end": 0.5, "bytes": 1000, "bits_per_second": 16000.0}},
                {"sum": {"start": 0.5, "end": 1.0, "bytes": 0, "bits_per_second": 0.0}},
            ],
            "end": {"sum_sent": {"bytes": 1000, "seconds": 1.0}, "sum_received": {}},
        },
    }
    tcp = parse_iperf(doc, T0)
    assert tcp["intervals"][1][:3] == [-1.5, -1.0, 0]
    assert tcp["connections"] == 1 and tcp["error"] is None
    assert parse_iperf(None, T0)["ran"] is False


def test_parse_counters_skips_absent_interfaces():
    doc = {"samples": [{"t": T0 + 1, "c": {"ens1f0": [1, 2, 3, 4], "tap1": None}}]}
    assert parse_counters(doc, T0) == {"ens1f0": [[1.0, 1, 2, 3, 4]]}


# ---------------------------------------------------------------------------- report


def test_a_service_under_load_is_ingested_profiled_and_reported(record, tmp_path):
    """The stored run with an open-loop client's output beside its probes (requests every
    ms, held up through the switchover as the pings were): the record's series, its
    figures beside the pings' silence, a summary line, the report's section and plot."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    window = json.loads((run / "probe" / "window.json").read_text())
    window["jobs"].append({"name": "service", "host": "labclient"})
    load = {"loaded": 100, "bytes": 100000, "seconds": 0.1, "error": None}
    window["workload"] = {
        "service": "redis", "rate": 1000.0, "mix": "a", "keys": "zipfian", "records": 100,
        "value_size": 1000, "connections": 4, "timeout": 2.0, "load": load,
    }  # fmt: skip
    (run / "probe" / "window.json").write_text(json.dumps(window))
    d = derive(record)
    silence_from = d["ping"]["silence_from"]
    held_until = silence_from + d["ping"]["silence_ms"] / 1000 + 0.005
    t0 = (
        record["profile"]["t0_epoch"] + record["profile"]["series"]["clocks"]["labclient"]["offset"]
    )
    requests = []
    for i in range(8000):
        sent = -2.0 + i / 1000
        replied = held_until if silence_from <= sent < held_until else sent + 0.0005
        requests.append([t0 + sent, (replied - sent) * 1000, "read", i % 100, "ok"])
    doc = {
        "service": "redis", "rate": 1000.0, "launched": t0 - 2.0, "behind_max_ms": 0.2,
        "requests": requests, "reconnects": [],
    }  # fmt: skip
    (run / "probe" / "service-labclient.json").write_text(json.dumps(doc))

    found = profile_run(run, draw=True)

    rec = json.loads((run / "run.json").read_text())
    series = rec["profile"]["series"]["service"]
    assert series["host"] == "labclient" and series["load"] == load
    assert len(series["requests"]) == 8000
    assert series["requests"][0][0] == pytest.approx(-2.0, abs=1e-5)
    figures = found["derived"]["service"]
    assert figures["failed"] == 0 and figures["periods"]["during"]["sent"] > 0
    assert figures["switchover_silence_ms"] == pytest.approx(d["ping"]["silence_ms"] + 5, abs=1.5)
    assert figures["outage_silence_ms"] == figures["switchover_silence_ms"]
    assert figures["switchover_vs_ping_ms"] == pytest.approx(5, abs=1.5)
    assert any(line.startswith("redis (a, zipfian, 1000/s)") for line in found["summary"])
    text = (run / "report.md").read_text()
    assert "## The service under load (redis)" in text and "](service.png)" in text
    assert (run / "service.png").read_bytes().startswith(b"\x89PNG")
    # Each request's five values on one line of run.json, not seven.
    assert (run / "run.json").read_text().count("\n") < 20000


def test_a_run_without_a_service_has_no_service_section_nor_plot(record, tmp_path):
    (tmp_path / "service.png").write_bytes(b"stale")
    text = write_report(record, tmp_path).read_text()
    assert "service under load" not in text
    assert not (tmp_path / "service.png").exists()
    assert derive(record)["service"] == {"measured": False}


def test_report_and_plots_are_drawn_from_the_record_alone(record, tmp_path):
    path = write_report(record, tmp_path)
    text = path.read_text()
    assert "TCP stream survived" in text
    assert "QEMU's downtime" in text and "guest-observed" in text
    for name in ("connection.png", "wire.png", "ram.png"):
        png = (tmp_path / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20000
        assert f"]({name})" in text


def test_report_of_a_broken_stream_says_so(record, tmp_path):
    record["profile"]["series"]["tcp"]["intervals"][-15:] = [
        [i[0], i[1], 0, 0.0, 0] for i in record["profile"]["series"]["tcp"]["intervals"][-15:]
    ]
    text = write_report(record, tmp_path).read_text()
    assert "TCP stream did NOT survive" in text
    assert "| survived | no |" in text


def test_cli_report_draw_rewrites_the_report(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(RUN, results / "one")
    assert cli.main(["report", "one", "--results", str(results), "--draw"]) == 0
    assert (results / "one" / "report.md").exists()
    assert "report: " in capsys.readouterr().out


def test_cli_report_draw_of_an_unprofiled_run_is_bad_input(record, tmp_path, capsys):
    results = tmp_path / "results"
    (results / "one").mkdir(parents=True)
    del record["profile"]
    (results / "one" / "run.json").write_text(json.dumps(record))
    assert cli.main(["report", "one", "--results", str(results), "--draw"]) == 2
    assert "not profiled" in capsys.readouterr().err


def test_a_guest_that_never_answers_again_has_no_downtime_but_lost_pings():
    replies = [[x / 100, n + 1, 0.3] for n, x in enumerate(range(-200, 50))]
    p = {"start": 0.0, "end": 0.6}
    figures = ping_figures({"replies": replies, "transmitted": 1000, "received": 250}, p, 0.01)
    assert figures["answered_after_migration"] is False
    assert figures["guest_downtime_ms"] is None
    assert figures["lost_around_migration"] == 750


# ---------------------------------------------------------------------------- edge cases


def _shift_migration(record: dict, seconds: float) -> None:
    """Make the migration end SECONDS later, as a longer migration would."""
    for event in record["events"]:
        if event["event"] == "MIGRATION" and event["data"].get("status") == "completed":
            event["t"] += seconds
    record["qemu"]["total_time_ms"] += int(seconds * 1000)


def test_a_migration_that_outlasts_the_probes_is_not_judged(record):
    # Ends at the window's close, not a second before it.
    _shift_migration(record, record["profile"]["window"]["closes"])
    d = derive(record)
    assert d["tcp"]["survived"] is None
    assert d["tcp"]["why_not"][0].startswith("not measured: the stream was to end")
    assert d["ping"]["guest_downtime_ms"] is None and "not measured" in d["ping"]["error"]
    assert verification(d) == {"tcp_stream_survived": None}
    assert "not judged" in summary(d)[1]


def test_a_tcp_probe_that_left_nothing_does_not_pass(record):
    record["profile"]["series"]["tcp"] = parse_iperf(None, T0)
    d = derive(record)
    assert d["tcp"]["measured"] and d["tcp"]["survived"] is False
    assert verification(d) == {"tcp_stream_survived": False}


def test_one_empty_report_at_the_end_is_not_a_stopped_stream(record):
    last = record["profile"]["series"]["tcp"]["intervals"][-1]
    last[2], last[3] = 0, 0.0
    assert derive(record)["tcp"]["survived"] is True


def test_postcopy_switches_over_when_postcopy_starts():
    record = {
        "status": "completed",
        "postcopy_at": 1.1,
        "qemu": {"total_time_ms": 3000, "downtime_ms": 40, "status": "completed"},
        "timeline": [{"t": 0.1, "status": "active"}, {"t": 3.0, "status": "completed"}],
    }
    p = phases(record)
    assert p["switchover"] == 1.1 and p["postcopy"] == 1.1 and p["end"] == 3.0
    assert [name for name, _, _ in phase_spans(p)] == [
        "setup",
        "pre-copy",
        "stop-and-copy",
        "post-copy",
    ]
