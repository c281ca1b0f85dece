"""Unit tests for the anatomy of a migration's downtime (src/qmigrate/anatomy.py): marks
from QEMU's events on both sides, the captures on both NICs and the client's ping, on
synthetic records whose every mark is known."""

from __future__ import annotations

import copy

import pytest

from qmigrate.anatomy import anatomy, ping_silence, ping_silences
from qmigrate.profile import parse_capture, phases, ping_figures
from qmigrate.report import anatomy_markdown, plot_anatomy
from tests.unit.frames import (
    CLIENT,
    CLIENT_MAC,
    GUEST,
    GUEST_MAC,
    ether,
    icmp,
    ipv4,
    probe_program,
    switchover_frames,
    tcp,
    write_pcap,
)

STOP, RESUME = 0.500, 0.515


def pings(lost: tuple[float, float] = (0.49, 0.56), late: dict | None = None) -> list:
    """A ping every 10 ms from -1 s to 3 s with a 0.5 ms round trip, those sent within
    LOST never answered, and LATE {send time: rtt_ms} answered late."""
    late = late or {}
    replies = []
    for n in range(400):
        sent = round(-1.0 + n * 0.01, 6)
        if lost[0] < sent < lost[1]:
            continue
        replies.append([sent, n + 1, late.get(sent, 0.5)])
    return replies


def record(**changes) -> dict:
    """A completed migration labsrc -> labdst: setup until 0.1 s, the source stopped at
    0.500 s and the destination resumed at 0.515 s; QEMU's RARP at 0.516 s, the guest's
    gratuitous ARP at 0.530 s and its first ping reply at 0.5603 s; the client's TCP
    segments went to the source until 0.51 s and reached the destination at 0.72 s."""
    rec = {
        "status": "completed",
        "qemu": {"downtime_ms": 14, "total_time_ms": 514},
        "events": [
            {"t": 0.0, "event": "MIGRATION", "data": {"status": "setup"}},
            {"t": 0.1, "event": "MIGRATION", "data": {"status": "active"}},
            {"t": STOP, "event": "STOP", "data": {}},
            {"t": 0.514, "event": "MIGRATION", "data": {"status": "completed"}},
        ],
        "profile": {
            "window": {
                "opened": -1.0,
                "closes": 3.0,
                "source": "labsrc",
                "destination": "labdst",
                "client": "labclient",
                "ping_interval": 0.01,
            },
            "series": {
                "ping": {"replies": pings(), "transmitted": 400, "received": 393},
                "destination_events": {
                    "events": [{"t": RESUME, "event": "RESUME", "data": {}}],
                },
                "captures": {
                    "labsrc": {
                        "out": {
                            "runs": {
                                # The guest talks until setup, is silent for 80 ms, then
                                # talks again until just before the stop.
                                "tcp-from-guest": [[-1.0, 0.01, 900], [0.09, 0.498, 400]],
                            }
                        },
                        "in": {"runs": {"tcp-to-guest": [[-1.0, 0.49, 900], [0.51, 0.51, 1]]}},
                    },
                    "labdst": {
                        "out": {
                            "runs": {
                                "rarp": [[0.516, 0.516, 1]],
                                "garp": [[0.530, 0.530, 1]],
                                "ping-reply": [[0.5603, 0.5603, 1], [0.5703, 0.5703, 1]],
                                "tcp-from-guest": [[0.7205, 3.0, 500]],
                            }
                        },
                        "in": {
                            "runs": {
                                "ping-request": [[0.56, 0.56, 1], [0.57, 0.57, 1]],
                                "tcp-to-guest": [[0.72, 3.0, 900]],
                            }
                        },
                    },
                },
                "clocks": {"labdst": {"offset": 0.0, "uncertainty": 1e-05}},
            },
        },
    }
    rec.update(changes)
    return rec


def derive_anatomy(rec: dict) -> dict:
    p = phases(rec)
    ping = ping_figures(rec["profile"]["series"]["ping"], p, 0.01)
    return anatomy(rec, p, ping)


def test_every_mark_is_found_in_order_and_the_parts_add_up():
    a = derive_anatomy(record())

    assert a["measured"] and a["missing"] == [] and a["in_order"], a
    assert a["marks"] == {
        # The last answered ping was sent at 0.49; the next, sent at 0.50, was lost: the
        # client waits from then.
        "client_waiting": 0.5,
        "last_source_frame": 0.498,
        "source_stopped": STOP,
        "source_completed": 0.514,
        "destination_resumed": RESUME,
        "first_announce": 0.516,
        "path_restored": 0.56,
        "first_guest_frame": 0.5603,
        "first_ping_answered": pytest.approx(0.5605),
        "tcp_resumed": 0.72,
    }
    parts = {part["name"]: part["ms"] for part in a["parts"]}
    assert parts == pytest.approx(
        {
            "waiting_before_stop": 0.0,
            "qemu_downtime": 14.0,
            "destination_finish": 1.0,
            "until_announced": 1.0,
            "until_guest_spoke": 44.3,
            "until_answered": 0.2,
        }
    )
    assert a["sum_ms"] == pytest.approx(60.5)
    # The guest-observed downtime: 60.5 ms without a reply while a ping waited, less the
    # usual round trip.
    assert a["guest_observed_ms"] == pytest.approx(60.0)
    # The pings around the stop were sent at 0.50 and 0.51 (both lost), usually answered
    # in 0.5 ms.
    assert a["sum_vs_guest"] == {
        "difference_ms": pytest.approx(0.5),
        "ping_interval_ms": pytest.approx(10.5),
        "within_ping_interval": True,
    }
    assert a["resume"] == {
        "stop_to_resume_ms": 15.0,
        "qemu_downtime_ms": 14,
        "stop_to_completed_ms": 14.0,
        "downtime_matches_events": True,
        "beyond_downtime_ms": 1.0,
    }


def test_the_sources_late_answer_after_its_stop_is_not_the_destinations_first():
    """The ping sent at 0.49 s, answered by the source just before it stopped but heard at
    0.502 s on a busy machine: the client's wait ends at the destination's first reply,
    after it resumed the guest (CI, 2026-12-03: the marks were out of order)."""
    rec = record()
    rec["profile"]["series"]["ping"]["replies"] = pings(lost=(0.495, 0.56), late={0.49: 12.0})

    a = derive_anatomy(rec)

    assert a["in_order"], a["out_of_order"]
    assert a["marks"]["first_ping_answered"] == pytest.approx(0.5605)
    assert a["marks"]["client_waiting"] == pytest.approx(STOP)


def test_the_tcp_stream_waited_out_its_retransmission_timer():
    tcp = derive_anatomy(record())["tcp"]

    # One segment went to the stopped source after the stop; the stream reached the
    # destination 160 ms after the path was back, 210 ms after that lost segment.
    assert tcp["segments_to_source_after_stop"] == 1
    assert tcp["last_to_source"] == 0.51
    assert tcp["waited_after_path_ms"] == pytest.approx(160.0)
    assert tcp["retransmission_gap_ms"] == pytest.approx(210.0)
    assert tcp["stalled_ms"] == pytest.approx(220.0)


def test_the_setup_phase_stall_is_measured_beside_the_baseline():
    rec = record()
    # Pings sent during setup, and the one sent 10 ms before it, answered only when it
    # ended (at 0.095 s).
    late = {round(x / 100, 6): round((0.095 - x / 100) * 1000, 3) for x in range(-1, 10)}
    rec["profile"]["series"]["ping"]["replies"] = pings(late=late)

    setup = derive_anatomy(rec)["setup"]

    assert setup["setup_ms"] == 100.0
    # From -0.01 s (that ping's send time) to 0.095 s, less the usual 0.5 ms; the baseline
    # before the migrate command does not take the stall that spills into it.
    assert setup["ping"]["unanswered_ms"] == pytest.approx(104.5)
    assert setup["ping"]["from"] == pytest.approx(-0.01)
    assert setup["ping"]["rtt_max_ms"] == pytest.approx(95.0)
    assert setup["ping_baseline"]["unanswered_ms"] == pytest.approx(0.0)
    assert setup["guest_silent"] == {"ms": 80.0, "from": 0.01, "to": 0.09}
    assert setup["guest_silent_baseline"]["ms"] == 0.0


def test_a_missing_capture_leaves_marks_missing_and_says_which():
    rec = record()
    del rec["profile"]["series"]["captures"]["labdst"]

    a = derive_anatomy(rec)

    assert not a["measured"]
    assert a["missing"] == ["first_announce", "path_restored", "first_guest_frame", "tcp_resumed"]
    assert a["sum_ms"] is None and a["sum_vs_guest"]["within_ping_interval"] is None
    assert "Marks missing: first_announce" in "\n".join(anatomy_markdown(a))


def test_marks_out_of_their_order_are_named():
    rec = record()
    rec["profile"]["series"]["destination_events"]["events"][0]["t"] = 0.49

    a = derive_anatomy(rec)

    assert not a["in_order"]
    assert a["out_of_order"] == ["source_stopped (0.5000) after destination_resumed (0.4900)"]


def test_resume_long_after_qemus_downtime_is_measured():
    rec = record()
    rec["profile"]["series"]["destination_events"]["events"][0]["t"] = STOP + 0.05

    a = derive_anatomy(rec)

    assert a["resume"]["stop_to_resume_ms"] == pytest.approx(50.0)
    assert a["resume"]["beyond_downtime_ms"] == pytest.approx(36.0)
    parts = {part["name"]: part["ms"] for part in a["parts"]}
    assert parts["destination_finish"] == pytest.approx(36.0)


def test_qemus_downtime_that_disagrees_with_its_events_is_flagged():
    rec = record()
    rec["qemu"]["downtime_ms"] = 20

    assert derive_anatomy(rec)["resume"]["downtime_matches_events"] is False


@pytest.mark.parametrize(
    "change, why",
    [
        ({"status": "failed"}, "did not complete"),
        ({"events": [e for e in record()["events"] if e["event"] != "STOP"]}, "no STOP"),
    ],
)
def test_no_anatomy_without_a_completed_stop(change, why):
    a = derive_anatomy(record(**change))
    assert not a["measured"] and why in a["why_not"]


def test_a_postcopy_migration_has_no_anatomy():
    rec = record()
    rec["events"].insert(2, {"t": 0.3, "event": "MIGRATION", "data": {"status": "postcopy-active"}})
    assert "postcopy" in derive_anatomy(rec)["why_not"]


def test_a_same_host_migration_has_no_anatomy():
    rec = record()
    rec["profile"]["window"]["destination"] = "labsrc"
    assert "same-host" in derive_anatomy(rec)["why_not"]


def test_the_anatomy_is_drawn_and_written(tmp_path):
    rec = record()
    p = phases(rec)
    ping = ping_figures(rec["profile"]["series"]["ping"], p, 0.01)
    derived = {"phases": p, "anatomy": anatomy(rec, p, ping)}

    assert plot_anatomy(rec, derived, tmp_path / "anatomy.png")
    text = "\n".join(anatomy_markdown(derived["anatomy"]))

    assert (tmp_path / "anatomy.png").stat().st_size > 20000
    assert "| qemu_downtime | source_stopped | source_completed | 14.0 |" in text
    assert "Sum of the parts: 60.5 ms" in text


def test_no_marks_draw_no_figure(tmp_path):
    stale = tmp_path / "anatomy.png"
    stale.write_bytes(b"old")
    rec = record(status="failed")
    p = phases(rec)
    derived = {"phases": p, "anatomy": anatomy(rec, p, {})}
    assert plot_anatomy(rec, derived, stale) is False and not stale.exists()


# ---------------------------------------------------------------------------- ping


def test_a_client_that_sends_nothing_is_not_a_silence_of_the_guests():
    """The client's own stall: no ping sent for 80 ms, every ping answered at once."""
    replies = [[t / 100, n + 1, 0.5] for n, t in enumerate([*range(0, 50), *range(58, 100)])]

    silences = ping_silences(replies)

    assert max(end - start for start, end in silences) == pytest.approx(0.0005)


def test_a_request_answered_late_keeps_the_client_waiting():
    """Requests queued in the guest's NIC at the stop, answered 40 ms later from the
    destination: no ping is lost, yet the client heard nothing for 40 ms."""
    late = {0.5: 40.0, 0.51: 30.0, 0.52: 20.0, 0.53: 10.0}
    replies = copy.deepcopy(pings(lost=(0, 0), late=late))

    silence, start = ping_silence(replies, 0.0, 1.0)

    assert start == pytest.approx(0.5) and silence == pytest.approx(0.040)


def test_a_lost_request_waits_until_the_next_reply():
    silence, start = ping_silence(pings(lost=(0.49, 0.56)), 0.0, 1.0)
    # The first lost ping was sent at 0.50 (put between its answered neighbours); the next
    # reply came at 0.5605.
    assert start == pytest.approx(0.5) and silence == pytest.approx(0.0605)


# ---------------------------------------------------------------------------- from captures


def test_marks_come_from_captures_written_as_tcpdump_writes_them(tmp_path):
    """Both hypervisors' captures as pcap files, reduced by the probe program as on the
    hosts, put on the migrate command's clock by profile.parse_capture: the marks are the
    frames' own times."""
    probe = probe_program()
    t0 = 1_800_000_000.0  # the migrate command, epoch seconds
    src_out = [
        (t0 + 0.49, ether(CLIENT_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, CLIENT, 1, icmp(0)))),
        (t0 + 0.498, ether(CLIENT_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, CLIENT, 6, tcp(0)))),
    ]
    dst_out = switchover_frames(t0 + 0.516)
    dst_in = [
        (t0 + 0.5305, ether(GUEST_MAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, GUEST, 1, icmp(8)))),
        (t0 + 0.72, ether(GUEST_MAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, GUEST, 6, tcp(1448)))),
    ]
    captures = {}
    for host, sides in (
        ("labsrc", {"out": src_out, "in": []}),
        ("labdst", {"out": dst_out, "in": dst_in}),
    ):
        doc = {}
        for direction, frames in sides.items():
            path = tmp_path / f"{host}-{direction}.pcap"
            write_pcap(path, frames)
            read = list(probe.pcap_frames(str(path)))
            doc[direction] = {
                "frames": len(read),
                "runs": probe.reduce_frames(read, GUEST, {GUEST_MAC}),
            }
        captures[host] = parse_capture(doc, t0)
    rec = record()
    rec["profile"]["series"]["captures"] = captures

    marks = derive_anatomy(rec)["marks"]

    assert marks["last_source_frame"] == pytest.approx(0.498)
    assert marks["first_announce"] == pytest.approx(0.516)  # QEMU's RARP
    assert marks["path_restored"] == pytest.approx(0.5305)
    assert marks["first_guest_frame"] == pytest.approx(0.526)  # the guest's first reply
    assert marks["tcp_resumed"] == pytest.approx(0.72)
