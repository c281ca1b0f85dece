"""What QEMU 7.2 said about migrations on the lab: ``info migrate`` as HMP prints it
(data/info_migrate_*.txt) and, for the completed one, query-migrate's answer."""

from __future__ import annotations

from tests.unit import DATA

KIB = 1024

# What QEMU 7.2's query-migrate returns for the migration info_migrate_completed.txt shows.
QMP_COMPLETED = {
    "status": "completed",
    "setup-time": 2,
    "downtime": 27,
    "total-time": 355,
    "ram": {
        "transferred": 107366 * KIB,
        "remaining": 0,
        "total": 279368 * KIB,
        "duplicate": 43485,
        "skipped": 0,
        "normal": 26694,
        "normal-bytes": 106776 * KIB,
        "dirty-sync-count": 3,
        "page-size": 4 * KIB,
        "mbps": 2495.6,
        "pages-per-second": 340547,
        "multifd-bytes": 0,
        "postcopy-requests": 0,
        "precopy-bytes": 101858 * KIB,
        "downtime-bytes": 5508 * KIB,
        "postcopy-bytes": 0,
        "dirty-pages-rate": 0,
    },
}


def info_migrate(name: str) -> str:
    return (DATA / f"info_migrate_{name}.txt").read_text()
