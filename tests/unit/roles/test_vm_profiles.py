"""The vm role's profiles, rendered from the role's own defaults and vars with Ansible's
templating: the seed profile is the seed's VM, and a destination on the source's host
(vm_colocated) takes the next TAP device and moved host forwards."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template

from filter_plugins.qemu import colocated_nics, drive_files
from tests import ROOT
from tests.unit.seed import ADDED, DIFFERENCES, RUN, options, seed_argv

ROLE = ROOT / "roles" / "vm"

init_plugin_loader()
filter_loader.add_directory(str(ROOT / "filter_plugins"))


def trusted(value: Any) -> Any:
    """VALUE with every string marked as a template, as Ansible marks role files."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def render(expression: str, **overrides: Any) -> Any:
    """EXPRESSION templated with the vm role's defaults and vars and OVERRIDES (the
    inventory's and the play's variables, which beat role defaults)."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    variables = {**trusted(defaults), **overrides, **trusted(role_vars)}
    variables.setdefault("inventory_hostname", "labsrc")
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


SEED_VARS = {
    "vm_profile": "seed",
    "vm_accelerator": "kvm",
    "vm_kernel": "./linux-5.10.54/arch/x86_64/boot/bzImage",
    "vm_disk": "/proj/xdp-PG0/bullseye.img",
}


def test_seed_profile_is_the_seeds_vm_option_by_option():
    ours = options(render("{{ __vm_spec | qemu_argv }}", **SEED_VARS)[1:])

    # The seed typed its guest address by hand after boot; the profile passes it to the
    # guest on the kernel command line.
    appended = "console=ttyS0 root=/dev/sda earlyprintk=serial net.ifnames=0"
    differences = {
        **DIFFERENCES,
        ("-append", appended): ("-append", f"{appended} qmigrate.ip=10.10.1.100/24"),
    }
    expected = [differences.get(pair, pair) for pair in options(seed_argv())]
    assert [p for p in ours if p not in ADDED] == expected


def test_minimal_profile_boots_the_initramfs_guest_with_the_seeds_tap_nic():
    argv = render(
        "{{ __vm_spec | qemu_argv }}", vm_kernel="/proj/g/bzImage", vm_initrd="/proj/g/i.gz"
    )
    pairs = options(argv)

    assert ("-initrd", "/proj/g/i.gz") in pairs
    assert not [p for p in pairs if p[0] == "-drive"]
    assert ("-netdev", "tap,id=ens1f0,ifname=tap0,script=no,downscript=no") in pairs
    assert [p for p in pairs if p[0] == "-netdev"] == [
        ("-netdev", "tap,id=ens1f0,ifname=tap0,script=no,downscript=no")
    ]
    assert (
        "-append",
        "console=ttyS0 earlyprintk=serial net.ifnames=0 qmigrate.ip=10.10.1.100/24",
    ) in pairs


def test_colocated_destination_moves_its_tap_and_forwards_only():
    source = render("{{ __vm_spec | qemu_argv }}", **SEED_VARS)
    destination = render(
        "{{ __vm_spec | qemu_argv(true) }}",
        **SEED_VARS,
        vm_name="vm0-incoming",
        vm_colocated=True,
    )

    renamed = [
        a.replace(RUN, f"{RUN}-incoming")
        .replace("ifname=tap0", "ifname=tap1")
        .replace("127.0.0.1:10021-", "127.0.0.1:10022-")
        .replace("vm0", "vm0-incoming", a == "vm0")
        for a in source
    ]
    assert destination == [*renamed, "-incoming", "defer"]
    assert ("-device", "virtio-net,netdev=ens1f0,mac=52:55:00:d1:55:01") in options(destination)


def test_colocated_nics_keep_models_ids_and_macs():
    nics = [
        {"type": "user", "id": "net0", "model": "e1000", "hostfwd": "tcp::10021-:22"},
        {"type": "tap", "id": "ens1f0", "ifname": "tap0", "mac": "52:55:00:d1:55:01"},
    ]

    moved = colocated_nics(nics, {"tap0": "tap1"}, 5)

    assert moved == [
        {"type": "user", "id": "net0", "model": "e1000", "hostfwd": ["tcp::10026-:22"]},
        {"type": "tap", "id": "ens1f0", "ifname": "tap1", "mac": "52:55:00:d1:55:01"},
    ]
    assert nics[1]["ifname"] == "tap0"  # the source's spec is left alone


@pytest.mark.parametrize(
    ("nics", "taps", "offset", "named"),
    [
        ([{"type": "tap", "ifname": "tap7"}], {"tap0": "tap1"}, 1, "nics[0].ifname"),
        ([{"type": "user", "hostfwd": ["tcp:10021"]}], {}, 1, "nics[0].hostfwd"),
        ([{"type": "user", "hostfwd": ["tcp::65535-:22"]}], {}, 1, "nics[0].hostfwd"),
        ([], {}, 0, "colocated port offset"),
    ],
)
def test_colocated_nics_refuse_what_they_cannot_move(nics, taps, offset, named):
    with pytest.raises(AnsibleFilterError, match=re.escape(f"VM spec {named}: ")):
        colocated_nics(nics, taps, offset)


def test_drive_files_name_each_disk_for_the_existence_check():
    assert drive_files(["/a.img", {"file": "/b.qcow2", "format": "qcow2"}]) == [
        {"var": "vm_drives[0]", "path": "/a.img"},
        {"var": "vm_drives[1]", "path": "/b.qcow2"},
    ]
    with pytest.raises(AnsibleFilterError, match=re.escape("VM spec drives[0].file: ")):
        drive_files([{"format": "raw"}])


def test_every_profile_the_argument_spec_allows_has_a_device_set():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    choices = specs["argument_specs"]["main"]["options"]["vm_profile"]["choices"]

    for table in ("__vm_profile_append", "__vm_profile_drives", "__vm_profile_nics"):
        assert sorted(render("{{ " + table + " }}", **SEED_VARS)) == sorted(choices)


def argv_task() -> tuple[str, str]:
    """The vm role's one task that checks the VM's inputs and renders its command line:
    its check's expression and its rendering's."""
    (task,) = yaml.safe_load((ROLE / "tasks" / "argv.yml").read_text())
    return task["vars"]["__vm_input_errors"], task["ansible.builtin.set_fact"]["__vm_argv"]


def test_the_render_refuses_every_bad_input_at_once_each_named_by_its_variable():
    errors, argv = argv_task()
    bad = {**SEED_VARS, "vm_kernel": "", "vm_memory": "12x", "vm_disk": "", "vm_incoming": False}

    found = render(errors, **bad)
    with pytest.raises(Exception, match="vm_kernel: a kernel image") as refused:
        render(argv, **bad, __vm_input_errors=trusted(errors))

    assert [p.split(":")[0] for p in found] == ["vm_kernel", "vm_memory", "vm_disk"]
    assert "vm_memory: '12x' is not a size" in str(refused.value)
    assert "vm_disk: the seed profile boots vm0 from a disk image" in str(refused.value)


def test_the_render_of_good_inputs_finds_nothing_to_refuse():
    errors, argv = argv_task()
    good = {**SEED_VARS, "vm_incoming": True}

    assert render(errors, **good) == []
    assert render(argv, **good, __vm_input_errors=trusted(errors))[-2:] == ["-incoming", "defer"]
