"""The qemu_argv filter against the seed's hand-typed command line, option by option."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from filter_plugins.qemu import QEMU_ROOT, memory_mib, qemu_argv, qemu_build
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


# -- which QEMU, which machine --------------------------------------------------------


def test_a_machine_type_and_firmware_directories_come_first():
    spec = dict(
        SEED_SPEC,
        binary="/opt/qmigrate/qemu/backports/usr/bin/qemu-system-x86_64",
        firmware_dirs=["/opt/q/usr/share/qemu", "/opt/q/usr/share/seabios"],
        machine="pc-i440fx-7.2",
    )

    argv = qemu_argv(spec)

    assert argv[:7] == [
        "/opt/qmigrate/qemu/backports/usr/bin/qemu-system-x86_64",
        "-L", "/opt/q/usr/share/qemu",
        "-L", "/opt/q/usr/share/seabios",
        "-machine", "pc-i440fx-7.2",
    ]  # fmt: skip
    assert "-machine" not in qemu_argv(SEED_SPEC) and "-L" not in qemu_argv(SEED_SPEC)


def test_a_machine_type_that_is_not_one_is_refused():
    with pytest.raises(AnsibleFilterError, match="machine: 'pc,accel=kvm' is not a QEMU machine"):
        qemu_argv(dict(SEED_SPEC, machine="pc,accel=kvm"))


@pytest.mark.parametrize(
    ("version", "host", "kind", "binary"),
    [
        ("distro", "labsrc", "distro", "qemu-system-x86_64"),
        ("backports", "labsrc", "backports", f"{QEMU_ROOT}/backports/usr/bin/qemu-system-x86_64"),
        ("/usr/local/bin/qemu-system-x86_64", "x", "build", "/usr/local/bin/qemu-system-x86_64"),
        ({"labsrc": "distro", "labdst": "backports"}, "labsrc", "distro", "qemu-system-x86_64"),
        (
            {"labsrc": "distro", "labdst": "backports"},
            "labdst",
            "backports",
            f"{QEMU_ROOT}/backports/usr/bin/qemu-system-x86_64",
        ),
        ({"labdst": "backports"}, "labsrc", "distro", "qemu-system-x86_64"),
        (
            {"default": "backports"},
            "labsrc",
            "backports",
            f"{QEMU_ROOT}/backports/usr/bin/qemu-system-x86_64",
        ),
    ],
)
def test_qemu_build_says_which_qemu_a_host_runs(version, host, kind, binary):
    build = qemu_build(version, host)

    assert build["kind"] == kind and build["binary"] == binary
    if kind == "backports":
        assert build["firmware_dirs"] == [
            f"{QEMU_ROOT}/backports/usr/share/qemu",
            f"{QEMU_ROOT}/backports/usr/share/seabios",
        ]
    else:
        assert build["firmware_dirs"] == []


def test_qemu_build_agrees_with_where_qemu_install_unpacks():
    from library.qemu_install import binary_of, firmware_dirs_of

    build = qemu_build("backports", "labsrc")

    assert build["binary"] == binary_of(build["prefix"])
    assert build["firmware_dirs"] == firmware_dirs_of(build["prefix"])


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("10.0", "qemu_version: '10.0' is not a QEMU"),
        ("", "qemu_version: '' is not a QEMU"),
        ("qemu-system-x86_64", "qemu_version: 'qemu-system-x86_64' is not a QEMU"),
        ({"labsrc": "newest"}, "qemu_version['labsrc']: 'newest' is not a QEMU"),
        ({"default": 10}, "qemu_version['default']: 10 is not a QEMU"),
    ],
)
def test_qemu_build_refuses_what_is_not_a_qemu(version, says):
    with pytest.raises(AnsibleFilterError, match=re.escape(says)):
        qemu_build(version, "labsrc")
