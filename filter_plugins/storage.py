# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the shared_storage role places, and how it tells a placed file is the right one.

A read-only file (a kernel, an initramfs) is checked by its content. A writable one (a VM's
disk) changes as soon as a guest runs from it, so its content says nothing about where it
came from: a record beside it, ``.<name>.sha256``, holds the SHA-256 of the file it was
placed from. It is placed again only when it is missing or its source changed, never
because the guest wrote to it.
"""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError


def record(dest: str) -> str:
    """The path of the record of the writable file DEST."""
    head, name = posixpath.split(str(dest))
    if not name:
        raise AnsibleFilterError(f"shared_storage_files: dest {dest!r} names no file")
    return posixpath.join(head, f".{name}.sha256")


def _by_item(results: list[dict], key: str) -> dict[str, dict]:
    return {r["item"][key]: r for r in results or [] if "item" in r}


def plan(
    files: list[dict], sources: list[dict], dests: list[dict], records: list[dict]
) -> list[dict]:
    """One entry per file of FILES: dest, src ('' if none), writable, sha256 (what it must
    hold or have been placed from, '' if unknown), exists, recorded (a writable file's
    record, '' if none), and place (a writable file to copy now: it has a source and is
    missing or was placed from another). SOURCES, DESTS and RECORDS are the registered
    results of stat on the sources, stat on the dests, and reading the records."""
    by_src = _by_item(sources, "dest")
    by_dest = _by_item(dests, "dest")
    by_record = _by_item(records, "dest")
    entries = []
    for item in files or []:
        dest = item["dest"]
        writable = bool(item.get("writable", False))
        src = item.get("src") or ""
        sha256 = item.get("sha256") or by_src.get(dest, {}).get("stat", {}).get("checksum", "")
        exists = bool(by_dest.get(dest, {}).get("stat", {}).get("exists", False))
        found = by_record.get(dest, {})
        recorded = (found.get("stdout") or "").strip() if found.get("rc") == 0 else ""
        entries.append(
            {
                "dest": dest,
                "src": src,
                "writable": writable,
                "sha256": sha256,
                "exists": exists,
                "recorded": recorded,
                "place": writable and bool(src) and (not exists or recorded != sha256),
            }
        )
    return entries


def problems(entries: list[dict], checksums: list[dict], host: str) -> list[str]:
    """What is wrong with the placed files on HOST: each entry of ENTRIES (from plan, after
    placing) checked against CHECKSUMS, the registered stat (with checksums) of the dests.
    A writable file placed now by this host counts as recorded with its source's sum."""
    by_dest = _by_item(checksums, "dest")
    wrong = []
    for entry in entries:
        stat = by_dest.get(entry["dest"], {}).get("stat", {})
        expected = entry["sha256"]
        if not stat.get("exists"):
            wrong.append(f"{entry['dest']} on {host} is missing")
            continue
        if entry["writable"]:
            found = expected if entry["src"] else entry["recorded"]
            if expected and found != expected:
                was = f"sha256 {found}" if found else "an unknown file (no record)"
                wrong.append(
                    f"{entry['dest']} on {host} was placed from {was}, expected {expected}"
                )
        elif expected and stat.get("checksum") != expected:
            found = stat.get("checksum")
            wrong.append(f"{entry['dest']} on {host} is sha256 {found}, expected sha256 {expected}")
    return wrong


def placed(entries: list[dict], checksums: list[dict]) -> list[dict]:
    """{dest, sha256, writable} of each entry: the content's sum, or for a writable file
    the sum of what it was placed from. Another host verifies the same files from this."""
    by_dest = _by_item(checksums, "dest")
    result = []
    for entry in entries:
        if entry["writable"]:
            sha256 = entry["sha256"] if entry["src"] else entry["recorded"]
        else:
            sha256 = by_dest.get(entry["dest"], {}).get("stat", {}).get("checksum", "")
        result.append({"dest": entry["dest"], "sha256": sha256, "writable": entry["writable"]})
    return result


class FilterModule:
    def filters(self):
        return {
            "shared_storage_record": record,
            "shared_storage_plan": plan,
            "shared_storage_problems": problems,
            "shared_storage_placed": placed,
        }
