"""Where the downtime goes: from the source's STOP to the guest's peers being answered
again, mark by mark.

QEMU reports the time between stopping the source and sending the last of its state;
the guest's peers see more: the destination must resume the guest, the switch must learn
where the guest now is (QEMU announces it, the guest's own frames teach it too), pings
must be answered and TCP must wait out its retransmission timer. :func:`anatomy` puts
those marks on the migrate command's clock from three sources that do not know about each
other: QEMU's events on both sides, the frames on both hypervisors' experiment NICs
(the probe program's capture, reduced to runs of frames of each kind) and the client's
ping, and checks them against each other.

Times are seconds since the migrate command, on the source's clock; the destination's
and the client's were corrected by the offsets their probes measured (profile.ingest).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

# Announcements of the guest after a migration: QEMU's RARP in its name, and the guest's
# own gratuitous ARP (virtio-net's guest announce); and the other frames the guest sends.
ANNOUNCE_KINDS = ("rarp", "garp")
GUEST_KINDS = ("ping-reply", "tcp-from-guest", "arp-from-guest", "other-from-guest")
CLIENT_KINDS = ("ping-request", "tcp-to-guest", "arp-to-guest", "other-to-guest")
# The marks, in the order they usually fall, with what each is.
MARKS = (
    (
        "client_waiting",
        "the client began to wait for a reply that came after the stop (or the stop)",
    ),
    ("last_source_frame", "the last frame the guest sent from the source's NIC"),
    ("source_stopped", "the source stopped the guest (its STOP event)"),
    (
        "source_completed",
        "the source had sent the last of the guest's state (its MIGRATION completed)",
    ),
    ("destination_resumed", "the destination resumed the guest (its RESUME event)"),
    ("first_announce", "the first announcement of the guest from the destination (RARP/GARP)"),
    ("path_restored", "the first of the client's pings delivered to the destination"),
    ("first_guest_frame", "the first frame the guest itself sent from the destination"),
    ("first_ping_answered", "the client's first ping reply after the stop"),
    ("tcp_resumed", "the first segment of the client's TCP stream delivered to the destination"),
)
# The order the marks must keep, as (earlier, later) pairs, give or take ORDER_SLACK s:
# the marks come from different observers (QEMU's stamps, the kernel's capture stamps, the
# client's), a frame takes some microseconds from QEMU to the NIC, and QEMU sends its first
# announcement as it starts the guest. Not every pair is ordered: the switch learns the
# guest's new port from QEMU's announcement or the guest's own first frame, so the path
# may come back before or after the guest speaks; the client's first reply may answer a
# ping that was queued in the guest at the stop and needed no new path; and a TCP segment
# may beat the next ping to the destination.
ORDER = (
    ("client_waiting", "source_stopped"),
    ("last_source_frame", "source_stopped"),
    ("source_stopped", "source_completed"),
    ("source_stopped", "destination_resumed"),
    ("destination_resumed", "first_announce"),
    ("first_announce", "first_guest_frame"),
    ("first_announce", "path_restored"),
    ("first_guest_frame", "first_ping_answered"),
    ("destination_resumed", "tcp_resumed"),
)
ORDER_SLACK = 0.001
# The parts of the guest-observed gap, each between two marks.
PARTS = (
    ("waiting_before_stop", "client_waiting", "source_stopped"),
    ("qemu_downtime", "source_stopped", "source_completed"),
    ("destination_finish", "source_completed", "destination_resumed"),
    ("until_announced", "destination_resumed", "first_announce"),
    ("until_guest_spoke", "first_announce", "first_guest_frame"),
    ("until_answered", "first_guest_frame", "first_ping_answered"),
)
# How far after the stop the destination's first frames are looked for, in seconds.
AFTER_STOP = 10.0
# QEMU's downtime is the source's STOP to its completion, in whole ms, as both events are
# stamped: they must agree within this much (ms).
DOWNTIME_TOLERANCE_MS = 2.0


def _runs(capture: dict | None, direction: str, kinds: tuple[str, ...]) -> list[list[float]]:
    """The runs [first, last, count] of KINDS in one direction of a capture, by time."""
    runs = ((capture or {}).get(direction) or {}).get("runs") or {}
    found = [run for kind in kinds for run in runs.get(kind, [])]
    return sorted(found, key=lambda r: r[0])


def _first_after(runs: list[list[float]], after: float, before: float) -> float | None:
    return next((r[0] for r in runs if after <= r[0] <= before), None)


def _event(events: list[dict], name: str, after: float | None = None) -> float | None:
    return next(
        (e["t"] for e in events if e.get("event") == name and (after is None or e["t"] >= after)),
        None,
    )


def wire_silence(
    runs: list[list[float]], lo: float, hi: float, *, whole: bool = False
) -> dict[str, Any] | None:
    """The longest time between two frames of RUNS that overlaps [LO, HI] (with WHOLE,
    that lies wholly within it)."""
    if not runs:
        return None
    best = None
    for a, b in pairwise(runs):
        start, end = a[1], b[0]
        if end <= lo or start >= hi or end <= start or (whole and (start < lo or end > hi)):
            continue
        gap = end - start
        if best is None or gap > best[0]:
            best = (gap, start, end)
    if best is None:
        return {"ms": 0.0, "from": None, "to": None}
    return {"ms": round(best[0] * 1000, 3), "from": round(best[1], 6), "to": round(best[2], 6)}


def ping_requests(replies: list[list[float]]) -> list[tuple[float, float | None]]:
    """Every ping the client sent, as (sent, replied) in order, REPLIED None for a lost one;
    REPLIES are ping's [sent, seq, rtt_ms]. A lost ping's send time is put between its
    answered neighbours', in proportion to sequence numbers (ping's pace drifts under
    load); pings lost after the last answer have no such bounds and are left out."""
    by_seq = sorted(replies, key=lambda r: r[1])
    requests: list[tuple[float, float | None]] = []
    for a, b in pairwise(by_seq):
        requests.append((a[0], a[0] + a[2] / 1000.0))
        requests += [
            (a[0] + (b[0] - a[0]) * (k - a[1]) / (b[1] - a[1]), None) for k in range(a[1] + 1, b[1])
        ]
    if by_seq:
        last = by_seq[-1]
        requests.append((last[0], last[0] + last[2] / 1000.0))
    return requests


def lost_send_times(replies: list[list[float]]) -> list[float]:
    """When the unanswered pings were sent (as PING_REQUESTS places them)."""
    return [sent for sent, replied in ping_requests(replies) if replied is None]


def silences(requests: list[tuple[float, float | None]]) -> list[tuple[float, float]]:
    """Every time no reply came while a request waited for one, as (start, end), from
    REQUESTS (sent, replied) in the order they were sent; REPLIED is None for one never
    answered (lost, failed, timed out), which waited until the first reply to a request
    sent after it.

    A silence starts at the last reply before it, or later at the send time of the first
    request still unanswered then, and ends at the next reply. A client that sent nothing
    for a while (its own stall) keeps no request waiting: that is no silence."""
    done = [math.inf if replied is None else replied for _sent, replied in requests]
    earliest = math.inf
    for i in range(len(done) - 1, -1, -1):
        if requests[i][1] is None:
            done[i] = earliest
        earliest = min(earliest, done[i])
    by_reply = sorted(zip((sent for sent, _ in requests), done, strict=True), key=lambda q: q[1])
    # The earliest send time among requests answered at or after each reply.
    first_sent = [0.0] * len(by_reply)
    low = math.inf
    for i in range(len(by_reply) - 1, -1, -1):
        low = min(low, by_reply[i][0])
        first_sent[i] = low
    found = []
    for i in range(1, len(by_reply)):
        prev, end = by_reply[i - 1][1], by_reply[i][1]
        start = max(prev, first_sent[i])
        if start < end < math.inf:
            found.append((start, end))
    return found


def ping_silences(replies: list[list[float]]) -> list[tuple[float, float]]:
    """The SILENCES of the client's pings (PING_REQUESTS of REPLIES). A request queued in
    the guest's NIC when the source stopped, answered late from the destination, keeps the
    client waiting as a lost one does."""
    return silences(ping_requests(replies))


def ping_silence(
    replies: list[list[float]], lo: float, hi: float, within: str = "began"
) -> tuple[float, float] | None:
    """The longest of the PING_SILENCES of REPLIES that began within [LO, HI) (WITHIN
    "began"), or that overlap it ("overlap"), or lie wholly within it ("whole"):
    (silence, start), in seconds."""
    keep = {
        "began": lambda start, end: lo <= start < hi,
        "overlap": lambda start, end: start < hi and end > lo,
        "whole": lambda start, end: lo <= start and end <= hi,
    }[within]
    inside = [(end - start, start) for start, end in ping_silences(replies) if keep(start, end)]
    return max(inside, default=None)


def _ping_stall(
    replies: list[list[float]], lo: float, hi: float, usual: float, within: str
) -> dict | None:
    """The longest silence of the guest to the client's pings in [LO, HI) (as
    PING_SILENCE's WITHIN; less the USUAL round trip, ms), as the guest-observed downtime
    is measured, and the largest round trip of a ping sent there."""
    silence = ping_silence(replies, lo, hi, within)
    if silence is None:
        return None
    return {
        "unanswered_ms": round(max(0.0, silence[0] * 1000 - usual), 3),
        "from": round(silence[1], 6),
        "rtt_max_ms": max((r[2] for r in replies if lo <= r[0] <= hi), default=None),
    }


def destination_runs(record: dict[str, Any], direction: str, kinds: tuple[str, ...]) -> list:
    """The runs [first, last, count] of KINDS in one DIRECTION of the destination's capture
    in a profiled RECORD, by time (none without a capture)."""
    profile = record.get("profile") or {}
    destination = (profile.get("window") or {}).get("destination")
    captures = (profile.get("series") or {}).get("captures") or {}
    return _runs(captures.get(destination), direction, kinds)


def anatomy(record: dict[str, Any], p: dict[str, Any], ping: dict[str, Any]) -> dict[str, Any]:
    """The marks, parts, checks and setup-phase stall of one profiled RECORD, given its
    phases P and its ping figures PING (profile.ping_figures)."""
    profile = record["profile"]
    series = profile["series"]
    window = profile["window"]
    source, destination = window["source"], window["destination"]
    captures = series.get("captures") or {}
    dst_events = (series.get("destination_events") or {}).get("events") or []
    out: dict[str, Any] = {"measured": False, "marks": {}, "missing": [], "parts": []}
    if p.get("end") is None:
        out["why_not"] = "no migration in the probe window"
        return out
    if record.get("status") not in (None, "completed"):
        out["why_not"] = "the migration did not complete"
        return out
    if p.get("postcopy") is not None:
        out["why_not"] = (
            "a postcopy migration: the destination runs the guest before the source has sent"
            " all of it, so its stop is not pre-copy's switchover"
        )
        return out
    if source == destination:
        out["why_not"] = "a same-host migration: the guest's frames never leave the host's bridge"
        return out
    marks: dict[str, float | None] = dict.fromkeys(name for name, _ in MARKS)
    stop = _event(record.get("events") or [], "STOP")
    marks["source_stopped"] = stop
    if stop is None:
        out["why_not"] = "the source's record has no STOP event (an HMP monitor sends none)"
        return out
    horizon = stop + AFTER_STOP
    marks["destination_resumed"] = _event(dst_events, "RESUME", after=stop - 1.0)
    marks["source_completed"] = next(
        (
            e["t"]
            for e in record.get("events") or []
            if e.get("event") == "MIGRATION" and e.get("data", {}).get("status") == "completed"
        ),
        None,
    )
    src_cap, dst_cap = captures.get(source), captures.get(destination)
    src_out = _runs(src_cap, "out", (*GUEST_KINDS, *ANNOUNCE_KINDS))
    earlier = [r[1] for r in src_out if r[1] <= (marks["destination_resumed"] or stop) + 0.001]
    marks["last_source_frame"] = earlier[-1] if earlier else None
    marks["first_announce"] = _first_after(_runs(dst_cap, "out", ANNOUNCE_KINDS), stop, horizon)
    marks["first_guest_frame"] = _first_after(_runs(dst_cap, "out", GUEST_KINDS), stop, horizon)
    marks["path_restored"] = _first_after(_runs(dst_cap, "in", ("ping-request",)), stop, horizon)
    marks["tcp_resumed"] = _first_after(_runs(dst_cap, "in", ("tcp-to-guest",)), stop, horizon)
    replies = (series.get("ping") or {}).get("replies") or []
    # The client's silence at the stop: from when it began to wait (the last reply before,
    # or the send time of the first ping not answered then, if later) to the next reply.
    # (A silence that began just after the stop counts from the stop: the guest was gone
    # before the client's next ping.) Its end is a reply from the destination, which
    # resumed the guest: one that arrives after the stop but before that is the source's
    # answer to a ping it took just before it stopped, late on a busy machine.
    answering = max(stop, marks["destination_resumed"] or stop)
    spans = [q for q in ping_silences(replies) if q[1] > answering]
    if spans:
        marks["client_waiting"] = min(spans[0][0], stop)
        marks["first_ping_answered"] = spans[0][1]
    out["marks"] = {k: None if v is None else round(v, 6) for k, v in marks.items()}
    out["mark_names"] = dict(MARKS)
    out["missing"] = [name for name, _ in MARKS if marks[name] is None]
    out["out_of_order"] = [
        f"{a} ({marks[a]:.4f}) after {b} ({marks[b]:.4f})"
        for a, b in ORDER
        if marks[a] is not None and marks[b] is not None and marks[a] > marks[b] + ORDER_SLACK
    ]
    out["in_order"] = not out["out_of_order"]
    for name, start, end in PARTS:
        a, b = marks[start], marks[end]
        out["parts"].append(
            {
                "name": name,
                "from": start,
                "to": end,
                "ms": None if a is None or b is None else round((b - a) * 1000, 3),
            }
        )
    parts = [part["ms"] for part in out["parts"]]
    total = round(sum(parts), 3) if None not in parts else None
    guest = ping.get("guest_downtime_ms")
    # The parts count from the stop, the client from its next ping: they may differ by
    # the interval between the pings sent around the stop, and the usual round trip.
    sends = [sent for sent, _ in ping_requests(replies)]
    before = max((t for t in sends if t <= stop), default=None)
    after = min((t for t in sends if t > stop), default=None)
    interval = None
    if before is not None and after is not None:
        interval = round((after - before) * 1000 + (ping.get("rtt_median_ms") or 0.0), 3)
    out["sum_ms"] = total
    out["guest_observed_ms"] = guest
    out["sum_vs_guest"] = {
        "difference_ms": None if total is None or guest is None else round(total - guest, 3),
        "ping_interval_ms": interval,
        "within_ping_interval": (
            None
            if total is None or guest is None or interval is None
            else abs(total - guest) <= interval
        ),
    }
    qemu_ms = (record.get("qemu") or {}).get("downtime_ms")
    resumed = marks["destination_resumed"]
    stop_to_resume = None if resumed is None else round((resumed - stop) * 1000, 3)
    completed = marks["source_completed"]
    by_events = None if completed is None else round((completed - stop) * 1000, 3)
    out["resume"] = {
        "stop_to_resume_ms": stop_to_resume,
        "qemu_downtime_ms": qemu_ms,
        # QEMU's downtime from the source's own events, which must agree with its figure
        "stop_to_completed_ms": by_events,
        "downtime_matches_events": (
            None
            if by_events is None or qemu_ms is None
            else abs(by_events - qemu_ms) <= DOWNTIME_TOLERANCE_MS
        ),
        # What the destination took beyond QEMU's downtime before the guest ran again
        "beyond_downtime_ms": (
            None
            if stop_to_resume is None or qemu_ms is None
            else round(stop_to_resume - qemu_ms, 3)
        ),
    }
    out["tcp"] = _tcp(marks, _runs(src_cap, "in", ("tcp-to-guest",)), stop)
    out["setup"] = _setup(p, replies, src_out, ping)
    out["clocks"] = series.get("clocks") or {}
    out["measured"] = not out["missing"]
    return out


def _tcp(marks: dict[str, float | None], lost_runs: list[list[float]], stop: float) -> dict:
    """How the client's TCP stream came back: segments it sent after the stop that the
    switch still took to the source (lost with the stopped guest), and how long after the
    path was back it waited for its retransmission timer."""
    resumed, restored = marks["tcp_resumed"], marks["path_restored"]
    lost = [r for r in lost_runs if r[1] > stop and (resumed is None or r[0] < resumed)]
    last_lost = max((r[1] for r in lost), default=None)
    return {
        "segments_to_source_after_stop": sum(int(r[2]) for r in lost),
        "last_to_source": None if last_lost is None else round(last_lost, 6),
        "waited_after_path_ms": (
            None if resumed is None or restored is None else round((resumed - restored) * 1000, 3)
        ),
        "retransmission_gap_ms": (
            None if resumed is None or last_lost is None else round((resumed - last_lost) * 1000, 3)
        ),
        "stalled_ms": (None if resumed is None else round((resumed - stop) * 1000, 3)),
    }


def _setup(p: dict, replies: list, src_out: list, ping: dict) -> dict[str, Any]:
    """The setup phase's stall (QEMU setting up dirty tracking before the first pass),
    measured as the switchover is: the longest time without an answered ping, and the
    longest silence of the guest on the source's NIC, beside the same before the
    migration (the baseline)."""
    active = p.get("active")
    if active is None:
        return {"measured": False}
    usual = ping.get("rtt_median_ms") or 0.0
    lead = min((r[0] for r in replies), default=-1.0)
    return {
        "measured": True,
        "setup_ms": round(active * 1000, 3),
        # The setup phase's stall may begin with a ping sent just before the migrate
        # command; the baseline's silences end before it.
        "ping": _ping_stall(replies, 0.0, active, usual, "overlap"),
        "ping_baseline": _ping_stall(replies, lead, 0.0, usual, "whole"),
        "guest_silent": wire_silence(src_out, 0.0, active),
        "guest_silent_baseline": wire_silence(src_out, lead, 0.0, whole=True),
    }


def lines(a: dict[str, Any]) -> list[str]:
    """The anatomy in a few lines, for the run's summary."""
    if not a.get("marks"):
        return [f"anatomy: not measured ({a.get('why_not', 'no marks')})"]
    parts = ", ".join(f"{part['name'].replace('_', ' ')} {_ms(part['ms'])}" for part in a["parts"])
    out = [f"downtime anatomy: {parts} (sum {_ms(a.get('sum_ms'))})"]
    tcp = a.get("tcp") or {}
    if tcp.get("stalled_ms") is not None:
        out.append(
            f"TCP moved again {_ms(tcp['stalled_ms'])} after the stop, "
            f"{_ms(tcp.get('waited_after_path_ms'))} after the path was back"
        )
    if a.get("missing"):
        out.append("marks missing: " + ", ".join(a["missing"]))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
