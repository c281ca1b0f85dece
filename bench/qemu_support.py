"""python -m bench.qemu_support: what each QEMU of this machine supports for a migration,
asked of the binaries themselves (a paused VM with no devices, over QMP on its standard
input: no network, no guest), printed as a Markdown table.

The QEMUs are those qmigrate_qemu_version names here: distro (the package manager's) and
backports (unpacked by scripts/setup under /opt/qmigrate/qemu/backports), and any binary
given with --binary.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

BACKPORTS = Path("/opt/qmigrate/qemu/backports")
# Features of the study, by what QEMU shows of them: a capability, a parameter (and a
# value it may take) or a machine type.
FEATURES = (
    ("multifd (parallel streams)", "capability", "multifd"),
    ("zero pages found in multifd's channels", "parameter", "zero-page-detection"),
    ("mapped-ram (RAM at fixed offsets, file: URIs)", "capability", "mapped-ram"),
    ("switchover-ack (the destination says when)", "capability", "switchover-ack"),
    ("postcopy-preempt", "capability", "postcopy-preempt"),
    ("compress (the old compression threads)", "capability", "compress"),
    ("multifd-compression zlib/zstd", "parameter", "multifd-compression"),
    ("dirty-limit (per-vCPU dirty rate limit)", "capability", "dirty-limit"),
    ("TLS (tls-creds)", "parameter", "tls-creds"),
    ("avail-switchover-bandwidth", "parameter", "avail-switchover-bandwidth"),
)


def ask(binary: str, firmware: list[str]) -> dict:
    """The version, migration capabilities and parameters, and machine types of BINARY."""
    commands = [
        {"execute": "qmp_capabilities"},
        {"execute": "query-version"},
        {"execute": "query-migrate-capabilities"},
        {"execute": "query-migrate-parameters"},
        {"execute": "query-machines"},
        {"execute": "quit"},
    ]
    argv = [binary, *(a for d in firmware for a in ("-L", d))]
    argv += ["-accel", "tcg", "-display", "none", "-nodefaults", "-S", "-qmp", "stdio"]
    out = subprocess.run(
        argv,
        input="".join(json.dumps(c) + "\n" for c in commands),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    answers = [m["return"] for m in map(json.loads, out.splitlines()) if "return" in m]
    version, caps, params, machines = answers[1:5]
    qemu = version["qemu"]
    return {
        "binary": binary,
        "version": f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}",
        "package": version.get("package", "").strip(),
        "capabilities": sorted(c["capability"] for c in caps),
        "parameters": sorted(params),
        "machines": sorted(m["name"] for m in machines),
    }


def _key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name.rsplit("-", 1)[-1]))


def family(found: dict, prefix: str) -> list[str]:
    return sorted((m for m in found["machines"] if m.startswith(prefix + "-")), key=_key)


def table(qemus: list[dict]) -> str:
    head = "| | " + " | ".join(f"QEMU {q['version']}" for q in qemus) + " |"
    lines = [head, "|---" * (len(qemus) + 1) + "|"]
    lines.append("| package | " + " | ".join(q["package"] or "-" for q in qemus) + " |")
    for label, kind, name in FEATURES:
        have = [name in q["capabilities" if kind == "capability" else "parameters"] for q in qemus]
        lines.append(f"| {label} | " + " | ".join("yes" if h else "no" for h in have) + " |")
    for prefix in ("pc-i440fx", "pc-q35"):
        cells = []
        for q in qemus:
            types = family(q, prefix)
            cells.append(f"{types[0]} to {types[-1]}" if types else "none")
        lines.append(f"| {prefix} machine types | " + " | ".join(cells) + " |")
    common = set(qemus[0]["machines"]).intersection(*(q["machines"] for q in qemus[1:]))
    newest = family({"machines": sorted(common)}, "pc-i440fx")
    lines.append(
        "| newest i440FX type all know | "
        + " | ".join([newest[-1] if newest else "none"] * len(qemus))
        + " |"
    )
    lines.append(
        "| capabilities / parameters | "
        + " | ".join(f"{len(q['capabilities'])} / {len(q['parameters'])}" for q in qemus)
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.qemu_support", description=__doc__)
    parser.add_argument("--binary", action="append", default=[], help="another QEMU binary")
    parser.add_argument("--json", action="store_true", help="print what was found as JSON")
    args = parser.parse_args(argv)
    wanted: list[tuple[str, list[str]]] = [("qemu-system-x86_64", [])]
    if (BACKPORTS / "usr/bin/qemu-system-x86_64").exists():
        share = BACKPORTS / "usr/share"
        wanted.append(
            (
                str(BACKPORTS / "usr/bin/qemu-system-x86_64"),
                [str(share / "qemu"), str(share / "seabios")],
            )
        )
    else:
        print(
            f"[qemu_support] no backported QEMU under {BACKPORTS}: run scripts/setup",
            file=sys.stderr,
        )
    wanted += [(b, []) for b in args.binary]
    found = [ask(binary, firmware) for binary, firmware in wanted]
    print(json.dumps(found, indent=1) if args.json else table(found), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
