"""The qemu_install module (library/qemu_install.py) without a mirror: what it does with a
prefix that already holds the version asked (nothing), in check mode, and with inputs it
must refuse. Downloading and unpacking the real packages is done by scripts/setup and
checked on the lab (molecule/qemu)."""

from __future__ import annotations

import json
from pathlib import Path

from library import qemu_install

VERSION = "1:10.0.2+ds-2+deb13u1~bpo12+1"


def fake_prefix(prefix: Path, version: str = VERSION, runs: bool = True) -> None:
    """A prefix as qemu_install leaves it: its stamp, and a binary that says its version
    (or fails as one missing a library does)."""
    binary = prefix / "usr" / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir(parents=True)
    if runs:
        body = "echo 'QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)'"
    else:
        lacks = "qemu: error while loading shared libraries: libfoo.so.1: cannot open"
        body = f"echo '{lacks}' >&2; exit 127"
    binary.write_text(f"#!/bin/sh\n{body}\n")
    binary.chmod(0o755)
    (prefix / qemu_install.STAMP).write_text(json.dumps({"version": version}))


def test_a_prefix_holding_the_version_is_left_as_it_is(run_main, tmp_path):
    prefix = tmp_path / "backports"
    fake_prefix(prefix)

    result = run_main(qemu_install, {"version": VERSION, "prefix": str(prefix)})

    assert result["changed"] is False
    assert result["binary"] == str(prefix / "usr/bin/qemu-system-x86_64")
    assert result["firmware_dirs"] == [
        str(prefix / "usr/share/qemu"),
        str(prefix / "usr/share/seabios"),
    ]
    assert result["qemu_version"].startswith("QEMU emulator version 10.0.2")


def test_another_version_would_be_unpacked_and_check_mode_says_so_only(run_main, tmp_path):
    prefix = tmp_path / "backports"
    fake_prefix(prefix, version="1:9.2.0")

    result = run_main(
        qemu_install,
        {"version": VERSION, "prefix": str(prefix), "_ansible_check_mode": True},
    )

    assert result["changed"] is True and result["qemu_version"] == ""
    stamp = json.loads((prefix / qemu_install.STAMP).read_text())
    assert stamp["version"] == "1:9.2.0"  # nothing changed


def test_a_binary_that_does_not_run_is_said_so_with_the_library_it_lacks(run_main, tmp_path):
    prefix = tmp_path / "backports"
    fake_prefix(prefix, runs=False)

    result = run_main(qemu_install, {"version": VERSION, "prefix": str(prefix)})

    assert result["failed"]
    assert "does not run: it needs libfoo.so.1" in result["msg"]


def test_a_prefix_that_is_not_an_absolute_directory_is_refused(run_main):
    for prefix in ("/", "relative/qemu"):
        result = run_main(qemu_install, {"version": VERSION, "prefix": prefix})

        assert result["failed"] and "must be an absolute path other than /" in result["msg"]


def test_the_dependencies_are_package_names_only():
    depends = (
        "libaio1 (>= 0.3.93), libc6 (>= 2.34), libfdt1 (>= 1.6.1) | libfdt-dev, "
        "qemu-system-common (= 1:10.0.2+ds-2), seabios (>> 1.16.3-1~), ipxe-qemu, libudev1:amd64"
    )

    assert qemu_install.dependency_names(depends) == [
        "libaio1",
        "libc6",
        "libfdt1",
        "qemu-system-common",
        "seabios",
        "ipxe-qemu",
        "libudev1",
    ]
