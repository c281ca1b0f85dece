"""The Debian guest (guest_image_type: debian): built through the role, cached, refused on
bad input, and booted with QEMU. No lab needed: the builder is localhost, and the VM has
user-mode networking only, restricted, its forwards bound to 127.0.0.1.

The image is the seed profile's (qmigrate_profile=seed: its kernel, size and the project's
key), built in the role's cache as provisioning builds it, so that test_seed.py's
provisioning finds it built: debootstrap runs once for both. A killed build and a size too
small are tried in a cache of this module's own."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from labrun import HEARTBEAT, PlaybookRun, run_playbooks

PLAYBOOK = """\
- name: Build the guest kernel and the Debian image
  hosts: builders
  gather_facts: false
  roles:
    - role: guest_kernel
    - role: guest_image
      vars:
        guest_image_type: debian
        guest_image_kernel: "{{ guest_kernel_result }}"
  tasks:
    - name: Publish the size asked for
      ansible.builtin.set_fact:
        debian_image_size: "{{ guest_image_size }}"
"""
SEED = {"qmigrate_profile": "seed"}
# The role's defaults (roles/guest_image/defaults/main.yml), which provisioning uses.
CACHE = Path("/var/cache/qmigrate/image")
KEY = Path("/var/lib/qmigrate/ssh/id_ed25519")
BUILD_TIMEOUT = 1800
BOOT_TIMEOUT = 240
GUEST_ADDRESS = "10.10.1.100/24"


@dataclass
class Workdir:
    """This module's playbook and private image cache, removed at its end."""

    root: Path

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def playbook(self) -> Path:
        return self.root / "debian-image.yml"


def debian_entries(cache: Path) -> set[str]:
    """The Debian builds' images, boot initramfs archives and build directories in CACHE
    (provisioning may write the initramfs guest's archives there meanwhile)."""
    if not cache.exists():
        return set()
    names = {p.name for p in cache.iterdir() if p.name.startswith(("debian-", ".debian-"))}
    return names - {".debian.lock"}


def mounts(cache: Path) -> list[str]:
    """Mount points under CACHE (debootstrap mounts proc in its tree)."""
    prefix = f"{cache}/"
    with open("/proc/self/mountinfo") as mountinfo:
        return [f[4] for f in map(str.split, mountinfo) if f[4].startswith(prefix)]


@dataclass
class Build:
    run: PlaybookRun
    image: dict
    kernel: dict
    size: str


def published(run: PlaybookRun, fact: str) -> Any:
    """The last value of a fact the playbook set, read from the JSON callback's results."""
    value: Any = {}
    for doc in run.reports:
        for play in doc["plays"]:
            for task in play["tasks"]:
                facts = task["hosts"].get("localhost", {}).get("ansible_facts", {})
                value = facts.get(fact, value)
    return value


def build(
    work: Workdir, cache: Path | None = None, options: tuple[str, ...] = (), **extra_vars: str
) -> tuple[PlaybookRun, dict, dict]:
    """The seed profile's image built, in CACHE when given (else the role's)."""
    private = {"guest_image_cache_dir": str(cache)} if cache else {}
    run = run_playbooks(
        str(work.playbook),
        extra_vars={**SEED, **private, **extra_vars},
        options=options,
        timeout=BUILD_TIMEOUT,
    )
    return run, published(run, "guest_image_result"), published(run, "guest_kernel_result")


@pytest.fixture(scope="module")
def work() -> Iterator[Workdir]:
    with tempfile.TemporaryDirectory(prefix="qmigrate-debian-image-", dir="/var/tmp") as tmp:
        work = Workdir(Path(tmp))
        work.playbook.write_text(PLAYBOOK)
        work.cache.mkdir()
        yield work


@pytest.fixture(scope="module")
def built(work: Workdir) -> Build:
    run, image, kernel = build(work)
    assert run.rc == 0, run.text[-4000:]
    return Build(run, image, kernel, published(run, "debian_image_size"))


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def debugfs_cat(image: str, path: str) -> str:
    """A file inside the ext4 image, read without mounting it."""
    out = subprocess.run(
        ["debugfs", "-R", f"cat {path}", image],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def size_bytes(size: str) -> int:
    """A size as the role takes it (a number with K, M, G or T: powers of 1024)."""
    return int(size[:-1]) << (10 * ("KMGT".index(size[-1].upper()) + 1))


def test_builds_a_debian_image(built):
    image = built.image

    assert image["type"] == "debian"
    assert re.fullmatch(rf"{CACHE}/debian-bullseye-[0-9a-f]{{16}}\.img", image["path"])
    assert os.path.getsize(image["path"]) == size_bytes(built.size)
    assert sha256(image["path"]) == image["sha256"]
    assert image["root_device"] == "/dev/sda"
    assert image["ssh_key"] == str(KEY)


def test_key_pair_is_private_and_authorized_in_the_image(built):
    public = KEY.with_suffix(".pub").read_text()

    assert KEY.stat().st_mode & 0o077 == 0
    assert built.image["ssh_public_key"] in public
    assert debugfs_cat(built.image["path"], "/root/.ssh/authorized_keys") == public


def test_image_mounts_sda_and_carries_the_kernels_modules(built):
    fstab = debugfs_cat(built.image["path"], "/etc/fstab")
    modules_dep = debugfs_cat(
        built.image["path"], f"/lib/modules/{built.kernel['release']}/modules.dep"
    )

    assert fstab.split()[:3] == ["/dev/sda", "/", "ext4"]
    assert "virtio_net.ko" in modules_dep


def test_modular_kernel_gets_a_boot_initramfs(built):
    initrd = built.image["initrd"]

    assert re.fullmatch(r".*/debian-boot-[0-9a-f]{16}\.cpio\.gz", initrd)
    assert sha256(initrd) == built.image["initrd_sha256"]


def test_second_run_changes_nothing(built, work):
    run, image, _ = build(work)

    assert run.rc == 0, run.text[-4000:]
    assert run.changed == {"localhost": 0}
    assert image == built.image


def test_check_mode_predicts_a_new_size_without_building(built, work):
    before = debian_entries(CACHE)

    run, image, _ = build(work, options=("--check",), guest_image_size="3G")

    assert run.rc == 0, run.text[-4000:]
    assert run.changed["localhost"] > 0
    assert image["path"] != built.image["path"]
    assert image["sha256"] == ""
    assert not Path(image["path"]).exists()
    assert debian_entries(CACHE) == before


def test_unknown_release_is_refused_before_anything_is_written(built, work):
    before = debian_entries(CACHE)

    run, _, _ = build(work, guest_image_debian_release="bullseyy")

    assert run.rc != 0
    assert "guest_image_debian_release 'bullseyy' is not on http://deb.debian.org/debian" in (
        run.text
    )
    assert debian_entries(CACHE) == before


def test_killed_build_is_cleaned_up_and_too_small_a_size_refused(built, work):
    killed = start_build_script(work.cache, size="64M")
    wait_for_build_directory(work.cache, killed)
    time.sleep(15)  # into debootstrap, which mounts proc in the tree
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert debian_entries(work.cache), "the killed build left no build directory to clean"

    run, _, _ = build(work, work.cache, guest_image_size="64M")

    assert run.rc != 0
    assert "guest_image_size 64M is too small" in run.text
    assert re.search(r"needs at least [0-9]+M", run.text)
    # The boot initramfs for the modular kernel is built, whole, before the image: it may
    # stay in the cache. No image and no build directory may.
    assert {n for n in debian_entries(work.cache) if not n.startswith("debian-boot-")} == set()
    assert mounts(work.cache) == []


def start_build_script(cache: Path, size: str) -> subprocess.Popen:
    """The role's build script (as the role put it in its cache) run by hand on CACHE, in
    its own process group, to be killed."""
    src = CACHE / "src"
    return subprocess.Popen(
        [
            str(src / "build-debian-image"),
            *("--cache-dir", str(cache), "--release", "bullseye"),
            *("--mirror", "http://deb.debian.org/debian", "--size", size),
            *("--public-key", f"{KEY}.pub", "--address", GUEST_ADDRESS),
            *("--hostname", "killed", "--root-device", "/dev/sda"),
            *("--overlay", str(src / "debian-rootfs"), "--", "systemd-sysv"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_build_directory(cache: Path, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not any(name.endswith(".build") for name in debian_entries(cache)):
        assert proc.poll() is None, "the build script ended before it started building"
        assert time.monotonic() < deadline, "the build script made no build directory"
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Guest:
    serial: Path
    experiment_port: int
    dhcp_port: int
    key: Path

    def heartbeats(self) -> list[tuple[int, float]]:
        text = self.serial.read_text(errors="replace")
        return [
            (int(n), float(t)) for n, t in re.findall(r"qmigrate-heartbeat (\d+) ([0-9.]+)", text)
        ]

    def ssh(self, port: int, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                *("ssh", "-i", str(self.key), "-p", str(port)),
                *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
                *("-o", "BatchMode=yes", "-o", "ConnectTimeout=10"),
                *("root@127.0.0.1", command),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def guest(built, work) -> Iterator[Guest]:
    """The image booted as the seed boots it, with a DHCP NIC of another driver than the
    seed's e1000 (test_seed.py boots that one): a vmxnet3. The experiment NIC is
    virtio-net on a user-mode network of the experiment subnet, so SSH reaches the guest
    at its static address. restrict=on: the guest reaches neither the host nor anything
    beyond it."""
    guest = Guest(work.root / "serial.log", free_port(), free_port(), KEY)
    guest.serial.touch()
    errors = work.root / "qemu.err"
    address = GUEST_ADDRESS.split("/")[0]
    with errors.open("w") as stderr:
        qemu = subprocess.Popen(
            [
                *("qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "2"),
                *("-kernel", built.kernel["image"], "-initrd", built.image["initrd"]),
                "-append",
                f"console=ttyS0 root=/dev/sda net.ifnames=0 qmigrate.ip={GUEST_ADDRESS}",
                *("-drive", f"file={built.image['path']},format=raw,snapshot=on"),
                "-netdev",
                "user,id=exp,restrict=on,net=10.10.1.0/24,host=10.10.1.2,"
                f"hostfwd=tcp:127.0.0.1:{guest.experiment_port}-{address}:22",
                *("-device", "virtio-net-pci,netdev=exp,mac=52:55:00:d1:55:01"),
                *(
                    "-netdev",
                    f"user,id=dhcp,restrict=on,hostfwd=tcp:127.0.0.1:{guest.dhcp_port}-:22",
                ),
                *("-device", "vmxnet3,netdev=dhcp"),
                *("-display", "none", "-monitor", "none", "-serial", f"file:{guest.serial}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not HEARTBEAT.search(guest.serial.read_text(errors="replace")):
            assert qemu.poll() is None, f"QEMU ended: {errors.read_text()}"
            assert time.monotonic() < deadline, f"no heartbeat within {BOOT_TIMEOUT} s"
            time.sleep(1)
        yield guest
    finally:
        qemu.terminate()
        try:
            qemu.wait(timeout=30)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()


def test_guest_says_its_experiment_nic_is_ready(guest):
    log = guest.serial.read_text(errors="replace")

    assert re.search(rf"qmigrate: guest ready eth[0-9]={GUEST_ADDRESS}", log), log[-2000:]


def test_guest_heartbeat_every_100_ms(guest):
    time.sleep(5)

    beats = guest.heartbeats()[-30:]

    counters = [n for n, _ in beats]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    mean_interval = (beats[-1][1] - beats[0][1]) / (len(beats) - 1)
    assert 0.09 <= mean_interval <= 0.3, mean_interval


@pytest.mark.parametrize("nic", ["experiment", "dhcp"])
def test_ssh_with_the_project_key(guest, nic):
    port = guest.experiment_port if nic == "experiment" else guest.dhcp_port
    deadline = time.monotonic() + BOOT_TIMEOUT

    while (out := guest.ssh(port, "ip -4 -o addr show; uptime")).returncode != 0:
        assert time.monotonic() < deadline, out.stderr
        time.sleep(3)

    assert f"inet {GUEST_ADDRESS} " in out.stdout
    assert "load average" in out.stdout


def test_guest_refuses_ssh_without_the_key(guest):
    out = subprocess.run(
        [
            *("ssh", "-p", str(guest.experiment_port), "-o", "StrictHostKeyChecking=no"),
            *("-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"),
            *("-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=10"),
            *("root@127.0.0.1", "true"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert out.returncode != 0
    assert "Permission denied" in out.stderr
