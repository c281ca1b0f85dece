"""A profiled run's report: results/<run-id>/report.md and its PNG plots, drawn from
run.json alone (``qmigrate report RUN --draw`` draws them again)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from qmigrate.profile import COUNTER_FIELDS, derive, phase_spans, summary

PHASE_COLOURS = {
    "setup": "#d9d9d9",
    "pre-copy": "#9ecae1",
    "stop-and-copy": "#fb6a4a",
    "post-copy": "#fdae6b",
}
PLOTS = ("connection.png", "wire.png", "ram.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shade(ax, spans: list[tuple[str, float, float]], passes: list[float], labels: bool) -> None:
    for name, lo, hi in spans:
        # A phase of a few milliseconds still shows as a visible band.
        width = max(hi - lo, 0.01)
        ax.axvspan(
            lo,
            lo + width,
            color=PHASE_COLOURS[name],
            alpha=0.6,
            lw=0,
            label=name if labels else None,
        )
    for n, at in enumerate(passes):
        ax.axvline(
            at,
            color="#6a51a3",
            lw=0.8,
            ls=":",
            label="dirty-sync pass" if labels and not n else None,
        )


def _rates(samples: list[list[float]], field: str) -> tuple[list[float], list[float]]:
    """Mbit/s between consecutive counter samples, at the interval's midpoint."""
    col = 1 + COUNTER_FIELDS.index(field)
    xs, ys = [], []
    for a, b in pairwise(samples):
        dt = b[0] - a[0]
        if dt > 0:
            xs.append((a[0] + b[0]) / 2)
            ys.append((b[col] - a[col]) * 8 / dt / 1e6)
    return xs, ys


def lost_send_times(replies: list[list[float]]) -> list[float]:
    """When the unanswered pings were sent: between the answered ones around them, in
    proportion to their sequence numbers (ping's pace drifts under load). Pings lost
    after the last answer have no such bounds and are left out."""
    lost = []
    for a, b in pairwise(replies):
        for seq in range(a[1] + 1, b[1]):
            lost.append(a[0] + (seq - a[1]) / (b[1] - a[1]) * (b[0] - a[0]))
    return lost


def plot_connection(record: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    series = record["profile"]["series"]
    spans = phase_spans(derived["phases"])
    passes = derived["phases"]["passes"]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5), layout="constrained")
    tcp = series.get("tcp") or {}
    if tcp.get("intervals"):
        xs = [i[0] for i in tcp["intervals"]] + [tcp["intervals"][-1][1]]
        ys = [i[3] / 1e6 for i in tcp["intervals"]]
        ys.append(ys[-1])
        top.step(xs, ys, where="post", color="#08519c", lw=1.2, label="iperf3 TCP to the guest")
    _shade(top, spans, passes, labels=True)
    top.set_ylabel("TCP throughput (Mbit/s)")
    top.set_ylim(bottom=0)
    verdict = derived["tcp"]
    title = "TCP stream " + _verdict(verdict)
    top.set_title(f"{record.get('run_id', '')}\n{title}", fontsize=10)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    ping = series.get("ping") or {}
    replies = ping.get("replies", [])
    if replies:
        bottom.plot(
            [r[0] for r in replies],
            [r[2] for r in replies],
            ".",
            ms=2,
            color="#238b45",
            label="ping RTT (answered)",
        )
        lost = lost_send_times(replies)
        if lost:
            bottom.plot(
                lost, [0] * len(lost), "x", ms=4, color="#cb181d", label="ping lost (when sent)"
            )
    _shade(bottom, spans, passes, labels=False)
    bottom.set_ylabel("ping round trip (ms)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("time since the migrate command (s)")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_wire(record: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    window = record["profile"]["window"]
    counters = record["profile"]["series"].get("counters", {})
    nic, taps = window["interfaces"][0], window["interfaces"][1:]
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    lines = [
        (window["source"], nic, "tx_bytes", f"{window['source']} {nic} sent"),
        (window["destination"], nic, "rx_bytes", f"{window['destination']} {nic} received"),
    ]
    for tap in taps:
        lines.append((window["source"], tap, "tx_bytes", f"{window['source']} {tap} to guest"))
        lines.append(
            (window["destination"], tap, "tx_bytes", f"{window['destination']} {tap} to guest")
        )
    seen = set()
    for host, iface, field, label in lines:
        samples = counters.get(host, {}).get(iface)
        if not samples or (host, iface, field) in seen:
            continue
        seen.add((host, iface, field))
        xs, ys = _rates(samples, field)
        ax.plot(xs, ys, lw=1.1, label=label)
    _shade(ax, phase_spans(derived["phases"]), derived["phases"]["passes"], labels=True)
    ax.set_xlim(window["opened"] - 0.5, window["closes"] + 0.5)
    ax.set_ylabel("rate on the wire (Mbit/s)")
    ax.set_xlabel("time since the migrate command (s)")
    ax.set_ylim(bottom=0)
    ax.set_title("Bytes on the wire (interface counters)", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ram(record: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    timeline = [p for p in record.get("timeline") or [] if p.get("remaining") is not None]
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    if timeline:
        xs = [p["t"] for p in timeline]
        ax.plot(xs, [p["remaining"] / 2**20 for p in timeline], "o-", ms=3, label="remaining RAM")
        ax.plot(
            xs,
            [(p["transferred"] or 0) / 2**20 for p in timeline],
            "s--",
            ms=3,
            label="transferred",
        )
    _shade(ax, phase_spans(derived["phases"]), derived["phases"]["passes"], labels=True)
    end = derived["phases"].get("end")
    if end:
        ax.set_xlim(-0.05 * end, end * 1.1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("MiB")
    ax.set_xlabel("time since the migrate command (s)")
    ax.set_title("QEMU's progress (query-migrate)", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _verdict(tcp: dict[str, Any]) -> str:
    if not tcp.get("measured"):
        return "not measured"
    return {
        True: "survived the migration",
        False: "did NOT survive the migration",
        None: "not judged: the probes ended too soon",
    }[tcp.get("survived")]


def _row(name: str, value: Any) -> str:
    return f"| {name} | {value} |"


def _mbit(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e6:.1f} Mbit/s"


def _num(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def markdown(record: dict[str, Any], derived: dict[str, Any]) -> str:
    qemu = record.get("qemu") or {}
    tcp, ping, wire, link = derived["tcp"], derived["ping"], derived["wire"], derived["link"]
    window = record["profile"]["window"]
    ph = derived["phases"]
    lines = [
        f"# Migration report: {record.get('run_id', '')}",
        "",
        (
            f"{record.get('vm', '?')}: {record.get('source', '?')} -> "
            f"{record.get('destination', '?')} over `{record.get('uri', '?')}`: "
            f"**{record.get('status', '?')}**"
            if "status" in record
            else f"Probes from {window['client']} to {window['target']} without a migration."
        ),
        "",
        *(f"- {line}" for line in summary(derived)),
        "",
        "## Downtime",
        "| | |",
        "|---|---|",
        _row("QEMU's downtime", _num(derived["downtime"]["qemu_ms"], " ms")),
        _row(
            "guest-observed (longest ping gap less one interval)",
            _num(derived["downtime"]["guest_observed_ms"], " ms", 1),
        ),
        _row("longest ping gap around the migration", _num(ping.get("gap_ms"), " ms", 1)),
        _row("pings lost around the switchover", _num(ping.get("lost_around_migration"))),
        _row(
            "pings sent / answered",
            f"{_num(ping.get('transmitted'))} / {_num(ping.get('received'))}",
        ),
        _row("ping interval", f"{float(window['ping_interval']) * 1000:.0f} ms"),
        "",
        "## TCP stream (iperf3, client to guest)",
        "| | |",
        "|---|---|",
        _row(
            "survived",
            {True: "yes", False: "no", None: "not judged"}[tcp.get("survived")]
            if tcp.get("measured")
            else "not measured",
        ),
        *(_row("why not", reason) for reason in tcp.get("why_not", [])),
        _row("before the migration", _mbit(tcp.get("before_bps"))),
        _row("during", _mbit(tcp.get("during_bps"))),
        _row("after", _mbit(tcp.get("after_bps"))),
        _row("lowest 100 ms interval around it", _mbit(tcp.get("lowest_interval_bps"))),
        _row("time with no data around it", _num(tcp.get("stalled_seconds"), " s", 1)),
        _row("retransmits", _num(tcp.get("retransmits"))),
        "",
        "## Migration",
        "| | |",
        "|---|---|",
        _row("total time", _num(qemu.get("total_time_ms"), " ms")),
        _row("setup time", _num(qemu.get("setup_time_ms"), " ms")),
        _row("dirty-sync passes", _num(qemu.get("dirty_sync_count"))),
        _row("QEMU's transferred bytes", _num(qemu.get("transferred_bytes"))),
        _row(
            f"bytes on the wire ({wire.get('nic')}, source, less guest traffic)",
            _num(wire.get("source_bytes")),
        ),
        _row(
            f"bytes on the wire ({wire.get('nic')}, destination, less guest traffic)",
            _num(wire.get("destination_bytes")),
        ),
        _row("wire / QEMU", _num(wire.get("wire_to_qemu_ratio"), "", 3)),
        _row("link capacity (iperf3, source to destination)", _mbit(link.get("capacity_bps"))),
        _row(
            "migration average (transferred / total time)", _mbit(link.get("migration_average_bps"))
        ),
        _row("QEMU's last reported throughput", _mbit(link.get("qemu_throughput_bps"))),
        _row(
            "fraction of the link",
            "-" if link.get("fraction_of_link") is None else f"{link['fraction_of_link']:.0%}",
        ),
        "",
        "Phases (seconds since the migrate command): "
        + ", ".join(f"{name} {lo:.3f}-{hi:.3f}" for name, lo, hi in phase_spans(ph))
        + f"; probe window {window['opened']:.2f} to {window['closes']:.2f}.",
        "",
        "## Plots",
        "![TCP throughput and ping round trip](connection.png)",
        "",
        "![Bytes on the wire](wire.png)",
        "",
        "![QEMU's remaining RAM](ram.png)",
        "",
    ]
    return "\n".join(lines)


def write_report(
    record: dict[str, Any], run_dir: Path, derived: dict[str, Any] | None = None
) -> Path:
    """Draw run_dir/report.md and its plots from RECORD (a profiled run.json); DERIVED,
    when the caller has just computed it, saves computing it again."""
    derived = derived or derive(record)
    plot_connection(record, derived, run_dir / "connection.png")
    plot_wire(record, derived, run_dir / "wire.png")
    plot_ram(record, derived, run_dir / "ram.png")
    path = run_dir / "report.md"
    path.write_text(markdown(record, derived))
    return path
