"""The guest initramfs build (roles/guest_image/files/build-initramfs) and its /init.

The build runs for real on this machine's busybox and iperf3 against a fake kernel tree;
the archive is read back with a small newc reader, so nothing needs root.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import ROOT

FILES = ROOT / "roles" / "guest_image" / "files"
BUILD = FILES / "build-initramfs"
INIT = FILES / "init"
DIRTY = FILES / "qmigrate-dirty"
BUSYBOX = Path("/bin/busybox")
IPERF3 = Path("/usr/bin/iperf3")
RELEASE = "6.1.0-99-test-amd64"
ADDRESS = "10.10.1.100/24"

pytestmark = pytest.mark.skipif(
    not (BUSYBOX.is_file() and IPERF3.is_file() and shutil.which("cpio")),
    reason="needs busybox-static, iperf3 and cpio (scripts/setup installs them)",
)


@dataclass(frozen=True)
class Entry:
    mode: int
    uid: int
    gid: int
    data: bytes


@dataclass(frozen=True)
class Build:
    status: str
    archive: Path


def read_newc(path: Path) -> dict[str, Entry]:
    """Entries of a gzip'd newc cpio archive by name (a symlink's data is its target)."""
    data = gzip.decompress(path.read_bytes())
    entries: dict[str, Entry] = {}
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701", f"bad newc header at {offset}"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, size, name_size = fields[1], fields[2], fields[3], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + name_size - 1].decode()
        body_start = (name_start + name_size + 3) & ~3
        offset = (body_start + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = Entry(mode, uid, gid, data[body_start : body_start + size])


@pytest.fixture
def kernel_tree(tmp_path: Path) -> Path:
    """An unpacked kernel package with a plain, a gzip'd and an xz'd module."""
    root = tmp_path / "kernel" / "root"
    drivers = root / "lib" / "modules" / RELEASE / "kernel" / "drivers"
    (drivers / "virtio").mkdir(parents=True)
    (drivers / "net").mkdir(parents=True)
    (drivers / "virtio" / "virtio.ko").write_bytes(b"virtio module")
    (drivers / "virtio" / "virtio_ring.ko.gz").write_bytes(gzip.compress(b"ring module"))
    (drivers / "net" / "virtio_net.ko.xz").write_bytes(
        lzma.compress(b"net module", format=lzma.FORMAT_XZ)
    )
    return root


def modules_of(root: Path) -> list[Path]:
    drivers = root / "lib" / "modules" / RELEASE / "kernel" / "drivers"
    return [
        drivers / "virtio" / "virtio_ring.ko.gz",
        drivers / "virtio" / "virtio.ko",
        drivers / "net" / "virtio_net.ko.xz",
    ]


def run_build(
    cache: Path,
    root: Path,
    modules: list[Path],
    *,
    address: str = ADDRESS,
    busybox: Path = BUSYBOX,
    tools: tuple[Path, ...] = (),
    dry_run: bool = False,
) -> subprocess.CompletedProcess[str]:
    argv = [
        str(BUILD),
        "--cache-dir", str(cache),
        "--init", str(INIT),
        "--busybox", str(busybox),
        "--iperf3", str(IPERF3),
        "--address", address,
        "--modules-root", str(root),
    ]  # option, value per line  # fmt: skip
    for tool in tools:
        argv += ["--tool", str(tool)]
    argv += ["--dry-run"] if dry_run else []
    argv += ["--", *map(str, modules)]
    env = {**os.environ, "TMPDIR": str(cache.parent)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def build(cache: Path, root: Path, modules: list[Path], **options: Any) -> Build:
    result = run_build(cache, root, modules, **options)
    assert result.returncode == 0, result.stderr
    status, archive = result.stdout.strip().split(" ", 1)
    return Build(status, Path(archive))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    directory = tmp_path / "image"
    directory.mkdir()
    return directory


def test_builds_once_then_reports_unchanged(cache: Path, kernel_tree: Path) -> None:
    modules = modules_of(kernel_tree)

    first = build(cache, kernel_tree, modules)
    second = build(cache, kernel_tree, modules)

    assert first.status == "built"
    assert first.archive.parent == cache
    assert re.fullmatch(r"initramfs-[0-9a-f]{16}\.cpio\.gz", first.archive.name)
    assert second == Build("unchanged", first.archive)
    assert sorted(p.name for p in cache.iterdir()) == [first.archive.name]


def test_dry_run_reports_without_writing(cache: Path, kernel_tree: Path) -> None:
    modules = modules_of(kernel_tree)

    planned = build(cache, kernel_tree, modules, dry_run=True)
    built = build(cache, kernel_tree, modules)
    checked = build(cache, kernel_tree, modules, dry_run=True)

    assert planned.status == "would-build"
    assert built.archive == planned.archive
    assert checked == Build("unchanged", built.archive)


@pytest.mark.parametrize(
    "change", ["address", "module order", "module content", "tool added", "tool content"]
)
def test_any_changed_input_names_a_new_archive(
    cache: Path, kernel_tree: Path, tmp_path: Path, change: str
) -> None:
    modules = modules_of(kernel_tree)
    tool = tmp_path / "qmigrate-dirty"
    tool.write_bytes(DIRTY.read_bytes())
    tools = () if change == "tool added" else (tool,)
    original = build(cache, kernel_tree, modules, tools=tools)
    address = ADDRESS
    if change == "address":
        address = "10.10.1.101/24"
    elif change == "module order":
        modules = list(reversed(modules))
    elif change == "module content":
        modules[1].write_bytes(b"virtio module, rebuilt")
    elif change == "tool content":
        tool.write_bytes(DIRTY.read_bytes() + b"# changed\n")
    tools = (tool,)

    changed = build(cache, kernel_tree, modules, address=address, tools=tools)

    assert changed.status == "built"
    assert changed.archive != original.archive


def test_archive_holds_the_guest(cache: Path, kernel_tree: Path) -> None:
    result = build(cache, kernel_tree, modules_of(kernel_tree))

    entries = read_newc(result.archive)

    init = entries["init"]
    assert init.data == INIT.read_bytes()
    assert stat.S_ISREG(init.mode) and init.mode & 0o111
    assert all(e.uid == 0 and e.gid == 0 for e in entries.values())
    assert entries["bin/busybox"].data == BUSYBOX.read_bytes()
    for applet in ("bin/sh", "sbin/insmod", "sbin/ip", "bin/usleep", "bin/mount"):
        assert stat.S_ISLNK(entries[applet].mode), applet
        assert entries[applet].data == b"/bin/busybox", applet
    assert stat.S_IMODE(entries["tmp"].mode) == 0o1777
    assert entries["usr/bin/iperf3"].data == IPERF3.read_bytes()
    assert entries["etc/qmigrate/address"].data == f"{ADDRESS}\n".encode()


def test_tools_are_executables_in_usr_sbin(cache: Path, kernel_tree: Path) -> None:
    entries = read_newc(build(cache, kernel_tree, [], tools=(DIRTY,)).archive)

    tool = entries["usr/sbin/qmigrate-dirty"]
    assert tool.data == DIRTY.read_bytes()
    assert stat.S_ISREG(tool.mode) and stat.S_IMODE(tool.mode) == 0o755
    assert "tool qmigrate-dirty " in entries["etc/qmigrate/manifest"].data.decode()


def test_archive_holds_every_library_iperf3_needs(cache: Path, kernel_tree: Path) -> None:
    ldd = subprocess.run(["ldd", str(IPERF3)], capture_output=True, text=True, check=True)
    needed = [
        word for line in ldd.stdout.splitlines() for word in line.split() if word.startswith("/")
    ]

    entries = read_newc(build(cache, kernel_tree, []).archive)

    assert needed, "ldd named no libraries"
    for path in needed:
        assert entries[path.lstrip("/")].data == Path(path).read_bytes(), path


def test_modules_are_plain_and_listed_in_load_order(cache: Path, kernel_tree: Path) -> None:
    entries = read_newc(build(cache, kernel_tree, modules_of(kernel_tree)).archive)

    base = f"/lib/modules/{RELEASE}/kernel/drivers"
    order = [
        f"{base}/virtio/virtio_ring.ko",
        f"{base}/virtio/virtio.ko",
        f"{base}/net/virtio_net.ko",
    ]
    assert entries["etc/qmigrate/modules"].data.decode().splitlines() == order
    assert [entries[path.lstrip("/")].data for path in order] == [
        b"ring module",
        b"virtio module",
        b"net module",
    ]


def test_no_modules_gives_an_empty_list(cache: Path, kernel_tree: Path) -> None:
    entries = read_newc(build(cache, kernel_tree, []).archive)

    assert entries["etc/qmigrate/modules"].data == b""


@pytest.mark.parametrize(
    ("options", "modules", "message"),
    [
        ({"address": "10.10.1.100"}, None, "address must be IPv4 ADDR/PREFIX"),
        ({"busybox": IPERF3}, None, "dynamically linked; install busybox-static"),
        ({}, [Path("/nonexistent/virtio.ko")], "no such file: /nonexistent/virtio.ko"),
        ({}, [INIT], "is not under"),
    ],
    ids=["address without prefix", "dynamic busybox", "missing module", "module elsewhere"],
)
def test_rejects_bad_input(
    cache: Path,
    kernel_tree: Path,
    options: dict[str, Any],
    modules: list[Path] | None,
    message: str,
) -> None:
    result = run_build(cache, kernel_tree, modules or [], **options)

    assert result.returncode != 0
    assert message in result.stderr
    assert list(cache.iterdir()) == []


def test_init_is_valid_busybox_shell() -> None:
    result = subprocess.run(
        [str(BUSYBOX), "sh", "-n", str(INIT)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
