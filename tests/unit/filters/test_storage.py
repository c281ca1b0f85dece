"""How shared_storage decides to place a writable file (a VM's disk) and verifies it by
what it was placed from, not by content the guest has since changed."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from filter_plugins.storage import placed, plan, problems, record

DISK = "/proj/g/bullseye.img"
KERNEL = "/proj/g/qmigrate/bzImage"
BUILT = "a" * 64
OTHER = "b" * 64


def registered(item: dict, **result) -> dict:
    return {"item": item, **result}


def disk_plan(*, exists: bool, recorded: str | None, src: str = "/cache/debian.img") -> list[dict]:
    item = {"dest": DISK, "src": src, "writable": True}
    record_result = {"rc": 0, "stdout": f"{recorded}\n"} if recorded is not None else {"rc": 1}
    return plan(
        [item],
        [registered(item, stat={"exists": True, "checksum": BUILT})] if src else [],
        [registered(item, stat={"exists": exists})],
        [registered(item, **record_result)],
    )


def test_record_sits_beside_the_file_hidden():
    assert record(DISK) == "/proj/g/.bullseye.img.sha256"
    with pytest.raises(AnsibleFilterError, match="names no file"):
        record("/proj/g/")


@pytest.mark.parametrize(
    ("exists", "recorded", "place"),
    [
        (False, None, True),  # first provision
        (True, BUILT, False),  # again, whatever the guest wrote since
        (True, OTHER, True),  # the image was rebuilt from other inputs
        (True, None, True),  # a file nobody recorded: replace it
        (False, BUILT, True),  # recorded but deleted
    ],
)
def test_writable_file_is_placed_only_when_missing_or_from_another_source(exists, recorded, place):
    (entry,) = disk_plan(exists=exists, recorded=recorded)

    assert entry["place"] is place
    assert entry["sha256"] == BUILT


def test_read_only_files_are_never_planned_by_record():
    item = {"dest": KERNEL, "src": "/cache/vmlinuz"}

    (entry,) = plan([item], [registered(item, stat={"exists": True, "checksum": BUILT})], [], [])

    assert entry["writable"] is False and entry["place"] is False and entry["sha256"] == BUILT


def test_verification_reads_the_record_of_a_writable_file_and_the_content_of_others():
    disk = {"dest": DISK, "sha256": BUILT, "writable": True}
    kernel = {"dest": KERNEL, "sha256": BUILT}
    entries = plan(
        [disk, kernel],
        [],
        [registered(disk, stat={"exists": True})],
        [registered(disk, rc=0, stdout=BUILT)],
    )
    # The guest has written to its disk: the content no longer matches, and must not matter.
    stats = [
        registered(disk, stat={"exists": True}),
        registered(kernel, stat={"exists": True, "checksum": BUILT}),
    ]

    assert problems(entries, stats, "labdst") == []
    assert placed(entries, stats) == [
        {"dest": DISK, "sha256": BUILT, "writable": True},
        {"dest": KERNEL, "sha256": BUILT, "writable": False},
    ]


def test_verification_names_the_file_the_host_and_what_is_wrong():
    disk = {"dest": DISK, "sha256": BUILT, "writable": True}
    kernel = {"dest": KERNEL, "sha256": BUILT}
    entries = plan(
        [disk, kernel],
        [],
        [registered(disk, stat={"exists": True})],
        [registered(disk, rc=0, stdout=OTHER)],
    )
    stats = [
        registered(disk, stat={"exists": True}),
        registered(kernel, stat={"exists": True, "checksum": OTHER}),
    ]

    assert problems(entries, stats, "labdst") == [
        f"{DISK} on labdst was placed from sha256 {OTHER}, expected {BUILT}",
        f"{KERNEL} on labdst is sha256 {OTHER}, expected sha256 {BUILT}",
    ]
    unrecorded = plan(
        [disk], [], [registered(disk, stat={"exists": True})], [registered(disk, rc=1)]
    )
    assert problems(unrecorded, stats[:1], "labsrc") == [
        f"{DISK} on labsrc was placed from an unknown file (no record), expected {BUILT}"
    ]
    assert problems(entries[1:], [registered(kernel, stat={"exists": False})], "labsrc") == [
        f"{KERNEL} on labsrc is missing"
    ]
