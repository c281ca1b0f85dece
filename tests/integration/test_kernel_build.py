"""guest_kernel with guest_kernel_source: build, on the builder (localhost), no lab needed.

The tests marked slow build a real kernel, Debian bullseye's linux-source-5.10 (5.10.223)
with defconfig, kvm_guest.config and the seed's options, and boot it under QEMU TCG the
seed's way. The build took 35 minutes on the two-core machine this was written on (the
role's whole first run, build tools and download included, 36). They run only with
QMIGRATE_SLOW=1; the build stays cached in /var/cache/qmigrate/kernel, and runs with it
cached take four minutes, the quick tests included. The bad-input and check-mode tests
always run, about half a minute each: they use a cache directory of their own and build
nothing.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import pytest
from labrun import PlaybookRun, run_playbooks

slow = pytest.mark.skipif(
    os.environ.get("QMIGRATE_SLOW") != "1",
    reason="builds a Linux kernel (half an hour on two cores); set QMIGRATE_SLOW=1",
)

PLAYBOOK = """\
- name: Build the guest kernel
  hosts: builders
  gather_facts: false
  roles:
    - role: guest_kernel
"""
BUILD = {"guest_kernel_source": "build"}
# The seed's kernel command line, with a panic ending the boot instead of hanging it.
SEED_APPEND = "console=ttyS0 root=/dev/sda earlyprintk=serial net.ifnames=0 panic=-1"
# Runs as the guest's /sbin/init from the seed's disk: names each NIC's driver, powers off.
GUEST_INIT = """\
#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
for nic in /sys/class/net/eth*; do
    driver=$($bb readlink "$nic/device/driver")
    echo "qmigrate-nic ${nic##*/} ${driver##*/}"
done
echo "qmigrate-root $($bb grep ' / ' /proc/mounts)"
$bb poweroff -f
"""


@pytest.fixture(scope="module")
def playbook(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("kernel") / "kernel.yml"
    path.write_text(PLAYBOOK)
    return str(path)


def kernel_result(run: PlaybookRun) -> dict:
    """The guest_kernel_result fact the role published, from the JSON report."""
    for doc in run.reports:
        for play in doc["plays"]:
            for task in play["tasks"]:
                for res in task["hosts"].values():
                    facts = res.get("ansible_facts", {})
                    if "guest_kernel_result" in facts:
                        return facts["guest_kernel_result"]
    raise AssertionError("no guest_kernel_result in the report")


def failure_text(run: PlaybookRun) -> str:
    """The messages of the failed tasks, as one string."""
    return json.dumps(
        [
            res
            for doc in run.reports
            for play in doc["plays"]
            for task in play["tasks"]
            for res in task["hosts"].values()
            if res.get("failed")
        ]
    )


def linux_tarball(path: Path, top: str, version: str, patchlevel: str, sublevel: str):
    """A tarball holding nothing but a Linux Makefile that names the given version."""
    makefile = f"VERSION = {version}\nPATCHLEVEL = {patchlevel}\nSUBLEVEL = {sublevel}\n"
    with tarfile.open(path, "w:xz") as tar:
        info = tarfile.TarInfo(f"{top}/Makefile")
        info.size = len(makefile)
        tar.addfile(info, BytesIO(makefile.encode()))


def build_leftovers(cache: Path) -> list[str]:
    """Build directories, finished or partial, in the cache."""
    return sorted(p.name for p in cache.glob("build-*") if p.is_dir())


# --- bad input: refused before anything is built -------------------------------------


def test_version_the_package_does_not_hold_is_refused(playbook, tmp_path):
    cache = tmp_path / "cache"

    run = run_playbooks(
        playbook,
        extra_vars={
            **BUILD,
            "guest_kernel_build_version": "5.10.54",
            "guest_kernel_cache_dir": str(cache),
        },
    )

    failures = failure_text(run)
    assert run.rc != 0
    assert re.search(
        r"guest_kernel_build_version 5\.10\.54: linux-source-5\.10 from bullseye "
        r"holds 5\.10\.\d+",
        failures,
    ), run.text[-4000:]
    assert build_leftovers(cache) == []
    assert not list((cache / "sources").glob("*.deb"))


def test_tarball_holding_another_version_is_refused(playbook, tmp_path):
    tarball = tmp_path / "linux-5.10.54.tar.xz"
    linux_tarball(tarball, "linux-5.10.54", "5", "10", "999")
    cache = tmp_path / "cache"

    run = run_playbooks(
        playbook,
        extra_vars={
            **BUILD,
            "guest_kernel_build_version": "5.10.54",
            "guest_kernel_build_tarball": str(tarball),
            "guest_kernel_cache_dir": str(cache),
        },
    )

    failures = failure_text(run)
    assert run.rc != 0
    assert f"guest_kernel_build_version 5.10.54: {tarball} holds 5.10.999" in failures, failures
    assert build_leftovers(cache) == []


def test_tarball_named_for_another_version_is_refused(playbook, tmp_path):
    tarball = tmp_path / "linux-5.10.54.tar.xz"
    linux_tarball(tarball, "linux-5.10.54", "5", "10", "999")
    cache = tmp_path / "cache"

    run = run_playbooks(
        playbook,
        extra_vars={
            **BUILD,
            "guest_kernel_build_tarball": str(tarball),
            "guest_kernel_cache_dir": str(cache),
        },
    )

    failures = failure_text(run)
    assert run.rc != 0
    expected = f"version 5.10.54 from the tarball's name: {tarball} holds 5.10.999"
    assert expected in failures, failures
    assert build_leftovers(cache) == []


def test_tarball_from_a_url_is_downloaded_then_checked(playbook, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    linux_tarball(served / "linux-5.10.54.tar.xz", "linux-5.10.54", "5", "10", "999")
    cache = tmp_path / "cache"
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))

    # Served on this machine's loopback: the builder downloads it as from kernel.org.
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/linux-5.10.54.tar.xz"
        run = run_playbooks(
            playbook,
            extra_vars={
                **BUILD,
                "guest_kernel_build_tarball": url,
                "guest_kernel_cache_dir": str(cache),
            },
        )
        server.shutdown()
    failures = failure_text(run)

    assert run.rc != 0
    assert f"version 5.10.54 from the tarball's name: {url} holds 5.10.999" in failures, failures
    assert (cache / "sources" / "linux-5.10.54.tar.xz").read_bytes() == (
        served / "linux-5.10.54.tar.xz"
    ).read_bytes()
    assert build_leftovers(cache) == []


def test_option_that_is_no_config_assignment_is_refused(playbook, tmp_path):
    cache = tmp_path / "cache"

    run = run_playbooks(
        playbook,
        extra_vars={
            **BUILD,
            "guest_kernel_build_config_options": ["CONFIG_MEMCG=y", "MEMCG"],
            "guest_kernel_cache_dir": str(cache),
        },
    )

    failures = failure_text(run)
    assert run.rc != 0
    assert "guest_kernel_build_config_options" in failures
    assert "these are not: MEMCG." in failures, failures
    assert not cache.exists()


def test_check_mode_predicts_a_build_without_building(playbook, tmp_path):
    cache = tmp_path / "cache"

    run = run_playbooks(
        playbook, extra_vars={**BUILD, "guest_kernel_cache_dir": str(cache)}, options=("--check",)
    )
    predicted = kernel_result(run)

    assert run.rc == 0, run.text[-4000:]
    assert run.changed["localhost"] > 0
    assert re.fullmatch(rf"{cache}/build-5\.10\.\d+-[0-9a-f]{{12}}", predicted["modules_root"])
    assert predicted["image"] == f"{predicted['modules_root']}/boot/vmlinuz-{predicted['release']}"
    assert predicted["modules"] == []
    assert build_leftovers(cache) == []
    assert not list((cache / "sources").glob("*.deb"))


# --- the real build (slow) -------------------------------------------------------------


@pytest.fixture(scope="module")
def built(playbook) -> dict:
    """The default build: bullseye's linux-source-5.10 with the seed's options."""
    run = run_playbooks(playbook, extra_vars=BUILD, timeout=4 * 3600)
    assert run.rc == 0, run.text[-4000:]
    return kernel_result(run)


@slow
def test_image_is_a_linux_kernel_of_the_source_version(built):
    file = subprocess.run(
        ["file", "--brief", built["image"]], capture_output=True, text=True, check=True
    )

    assert re.fullmatch(r"5\.10\.\d+", built["release"]), built
    assert built["image"] == f"{built['modules_root']}/boot/vmlinuz-{built['release']}"
    assert built["package"].startswith("linux-source-5.10_")
    assert file.stdout.startswith(
        f"Linux kernel x86 boot executable bzImage, version {built['release']} "
    ), file.stdout


@slow
def test_config_holds_the_seed_options(built):
    config = Path(built["modules_root"], "boot", f"config-{built['release']}").read_text()

    for option in ("CONFIG_MEMCG=y", "CONFIG_VIRTIO_NET=y", "CONFIG_E1000=y", "CONFIG_ATA_PIIX=y"):
        assert f"\n{option}\n" in config, option


@slow
def test_built_in_drivers_need_no_modules(built):
    modules = Path(built["modules_root"], "lib", "modules", built["release"])

    # virtio_net and virtio_pci, the role's default modules, are built in: none to load.
    assert built["modules"] == []
    assert "virtio_net.ko" in (modules / "modules.builtin").read_text()
    assert (modules / "modules.dep").exists()


@slow
def test_second_run_asking_for_that_version_builds_nothing(built, playbook):
    start = time.monotonic()
    run = run_playbooks(
        playbook, extra_vars={**BUILD, "guest_kernel_build_version": built["release"]}
    )
    elapsed = time.monotonic() - start

    assert run.rc == 0, run.text[-4000:]
    assert run.changed == {"localhost": 0}
    assert kernel_result(run) == built
    assert elapsed < 120


@slow
def test_check_mode_predicts_nothing_to_do(built, playbook):
    run = run_playbooks(playbook, extra_vars=BUILD, options=("--check",))

    assert run.rc == 0, run.text[-4000:]
    assert run.changed == {"localhost": 0}
    assert kernel_result(run) == built


@slow
def test_kernel_boots_the_seed_vm_under_tcg(built, tmp_path):
    """The seed's way: root=/dev/sda on a raw disk, a virtio-net and an e1000 NIC."""
    root = tmp_path / "root"
    for directory in ("bin", "sbin", "proc", "sys", "dev"):
        (root / directory).mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "sbin" / "init").write_text(GUEST_INIT)
    (root / "sbin" / "init").chmod(0o755)
    disk = tmp_path / "disk.raw"
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(root), str(disk), "16M"], check=True, timeout=60
    )

    # hubport NICs are joined to nothing: the guest has its devices and no network at all.
    boot = subprocess.run(
        [
            *("timeout", "120", "qemu-system-x86_64", "-accel", "tcg", "-m", "256"),
            *("-nographic", "-no-reboot", "-kernel", built["image"], "-append", SEED_APPEND),
            *("-drive", f"file={disk},format=raw"),
            *("-netdev", "hubport,id=net0,hubid=0"),
            *("-device", "virtio-net-pci,netdev=net0,mac=52:55:00:d1:55:01"),
            *("-netdev", "hubport,id=net1,hubid=1", "-device", "e1000,netdev=net1"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    console = boot.stdout

    assert f"Linux version {built['release']}" in console, console[-4000:]
    assert "Linux version 5.10" in console
    assert re.search(r"VFS: Mounted root \(ext4 filesystem\)", console), console[-4000:]
    drivers = set(re.findall(r"^qmigrate-nic eth\d (\S+)\r?$", console, re.MULTILINE))
    assert drivers == {"virtio_net", "e1000"}, console[-4000:]
    assert "qmigrate-root /dev/root / ext4" in console
    assert boot.returncode == 0, console[-4000:]


@slow
def test_option_whose_dependency_is_off_fails_the_build(built, playbook):
    cache = Path(built["modules_root"]).parent
    before = build_leftovers(cache)
    # CONFIG_KVM_AMD needs CONFIG_KVM, which defconfig leaves off: olddefconfig drops it.
    options = ["CONFIG_MEMCG=y", "CONFIG_KVM_AMD=y"]

    run = run_playbooks(
        playbook, extra_vars={**BUILD, "guest_kernel_build_config_options": options}
    )
    failures = failure_text(run)

    assert run.rc != 0
    assert "options not in effect after olddefconfig: CONFIG_KVM_AMD=y" in failures, failures
    assert build_leftovers(cache) == before
