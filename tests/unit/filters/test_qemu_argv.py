"""The qemu_argv filter against the seed's hand-typed command line, option by option."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from filter_plugins.qemu import memory_mib, qemu_argv
from tests.unit.seed import ADDED, DIFFERENCES, RUN, options, seed_argv

# The seed's VM as a spec: what the vm role builds from its variables.
SEED_SPEC = {
    "name": "vm0",
    "accelerator": "kvm",
    "cpus": 2,
    "memory": "256M",
    "kernel": "./linux-5.10.54/arch/x86_64/boot/bzImage",
    "drives": [{"file": "/proj/xdp-PG0/bullseye.img", "format": "raw"}],
    "append": "console=ttyS0 root=/dev/sda earlyprintk=serial net.ifnames=0",
    "nics": [
        {"type": "user", "id": "net0", "model": "e1000", "hostfwd": ["tcp:127.0.0.1:10021-:22"]},
        {
            "type": "tap",
            "id": "ens1f0",
            "ifname": "tap0",
            "model": "virtio-net",
            "mac": "52:55:00:d1:55:01",
        },
    ],
    "qmp": f"{RUN}/qmp.sock",
    "events": f"{RUN}/events.sock",
    "monitor": f"{RUN}/monitor.sock",
    "serial": f"{RUN}/serial.log",
    "pidfile": f"{RUN}/qemu.pid",
}


def test_seed_vm_matches_the_seed_option_by_option():
    ours = options(qemu_argv(SEED_SPEC)[1:])

    expected = [DIFFERENCES.get(pair, pair) for pair in options(seed_argv())]

    assert [p for p in ours if p not in ADDED] == expected
    assert set(ours) >= ADDED


def test_destination_is_the_source_plus_incoming_defer():
    source = qemu_argv(SEED_SPEC)

    destination = qemu_argv(SEED_SPEC, True)

    assert destination == [*source, "-incoming", "defer"]


def test_incoming_may_name_a_uri():
    assert qemu_argv(SEED_SPEC, "tcp:0:4444")[-2:] == ["-incoming", "tcp:0:4444"]


def test_tcg_uses_cpu_max_and_an_explicit_model_wins():
    tcg = {**SEED_SPEC, "accelerator": "tcg"}

    assert ("-cpu", "max") in options(qemu_argv(tcg))
    assert ("-accel", "tcg") in options(qemu_argv(tcg))
    assert ("-cpu", "qemu64") in options(qemu_argv({**tcg, "cpu": "qemu64"}))


def test_initrd_and_extra_args():
    spec = {**SEED_SPEC, "initrd": "/proj/g/initramfs.cpio.gz", "extra_args": ["-S"]}

    argv = qemu_argv(spec)

    assert ("-initrd", "/proj/g/initramfs.cpio.gz") in options(argv)
    assert argv[-1] == "-S"


@pytest.mark.parametrize(
    ("value", "mib"), [(256, 256), ("256M", 256), ("256", 256), ("2G", 2048), ("1GiB", 1024)]
)
def test_memory_sizes(value, mib):
    assert memory_mib(value) == mib


@pytest.mark.parametrize(
    ("value", "option"), [(256, "256M"), ("2G", "2048M"), ("262148K", "262148K"), ("16384K", "16M")]
)
def test_memory_option_is_in_kib_only_when_the_size_needs_it(value, option):
    assert ("-m", option) in options(qemu_argv({**SEED_SPEC, "memory": value}))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"memory": "lots"}, "memory"),
        ({"memory": 4}, "memory"),
        ({"accelerator": "xen"}, "accelerator"),
        ({"cpus": 0}, "cpus"),
        ({"name": "vm 0"}, "name"),
        ({"kernel": ""}, "kernel"),
        ({"nics": [{"type": "tap", "id": "n0", "ifname": "tap0", "mac": "52:55"}]}, "nics[0].mac"),
        ({"nics": [{"type": "tap", "id": "n0"}]}, "nics[0].ifname"),
        ({"nics": [{"type": "bridge"}]}, "nics[0].type"),
        ({"drives": [{"format": "raw"}]}, "drives[0].file"),
        ({"qmp": "/run/q,x/qmp.sock"}, "qmp"),
        ({"events": "/run/q,x/events.sock"}, "events"),
    ],
)
def test_bad_spec_is_refused_naming_the_key(change, named):
    with pytest.raises(AnsibleFilterError, match=re.escape(f"VM spec {named}: ")):
        qemu_argv({**SEED_SPEC, **change})


def test_a_comma_in_a_disk_path_is_escaped_for_qemu():
    spec = dict(SEED_SPEC, drives=[{"file": "/proj/a,b/disk.img", "format": "raw"}])

    argv = qemu_argv(spec)

    assert argv[argv.index("-drive") + 1] == "file=/proj/a,,b/disk.img,format=raw"
