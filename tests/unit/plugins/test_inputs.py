"""The check of every input before a run (action_plugins/qmigrate_inputs.py), over an
inventory like the lab's and the extra vars a user would give."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader

from action_plugins.qmigrate_inputs import Inputs, load_specs
from filter_plugins.migration import migration_default_uri, migration_settings
from filter_plugins.qemu import memory_mib, qemu_build
from filter_plugins.study import qmigrate_vms
from tests import ROOT

ROLES = ROOT / "roles"
SPECS = load_specs([str(ROLES)], DataLoader())
STUDY = {
    "qmigrate_source": "labsrc",
    "qmigrate_destination": "labdst",
    "qmigrate_vm_count": 1,
    "qmigrate_profile": "minimal",
    "vm_memory": "262148K",
    "migration_profile": True,
    "probe_duration": 15,
}
ADDRESSES = {"labsrc": "10.10.1.1/24", "labdst": "10.10.1.2/24", "labclient": "10.10.1.3/24"}
GROUPS = {
    "all": ["localhost", "labsrc", "labdst", "labclient"],
    "hypervisors": ["labsrc", "labdst"],
    "clients": ["labclient"],
}


def check(extra: dict[str, Any] | None = None, **inventory: Any) -> dict[str, str]:
    """The problems, variable -> problem, with the lab's inventory (plus INVENTORY) and
    EXTRA given as extra vars (which every host sees)."""
    extra = extra or {}
    hostvars = {}
    for host in GROUPS["all"]:
        own = {**STUDY, **inventory}
        if host in ADDRESSES:
            own["experiment_address"] = ADDRESSES[host]
        hostvars[host] = {**own, **extra}
    problems = Inputs(hostvars, extra, GROUPS, SPECS, memory_mib, qemu_build).check()
    return {p.variable: p.problem for p in problems}


def test_the_labs_own_inventory_passes():
    assert check() == {}


@pytest.mark.parametrize(
    "extra",
    [
        {"migration_max_bandwidth": "4000000"},  # -e key=value: a string
        {"migration_max_bandwidth": 4000000},  # JSON
        {"migration_timeout": "2.5", "migration_poll_interval": "0.05"},
        {"migration_postcopy": "off", "qmigrate_reverse": "yes", "migration_profile": "false"},
        {"migration_capabilities": {"multifd": "on", "auto-converge": False}},
        {"migration_parameters": {"multifd-channels": "4", "max-bandwidth": "0"}},
        {"migration_uri": "tcp:10.10.1.2:5555"},
        {"migration_uri": "exec:cat > /dev/null", "migration_allow_any_uri": "true"},
        {"vm_memory": "1G", "vm_cpus": "4"},
        {"qmigrate_vm_count": "4"},
        {"migration_run_id": "study-1.rep_2"},
        {"qmigrate_destination": "labsrc", "migration_transport": "unix"},
        {
            "qmigrate_profile": "seed",
            "probe_workload": "memcached",
            "probe_workload_rate": "3000",
            "probe_workload_records": "50000",
            "probe_workload_value_size": "100",
            "probe_workload_connections": "8",
            "probe_workload_timeout": "0.5",
            "probe_workload_mix": "c",
            "probe_workload_keys": "uniform",
            "probe_tcp": "true",
        },
        {
            "qmigrate_destination": "labsrc",
            "migration_uri": "unix:/run/qmigrate/labsrc/vm0-incoming/migration.sock",
        },
    ],
)
def test_good_input_in_any_form_passes(extra):
    assert check(extra) == {}


@pytest.mark.parametrize(
    "extra",
    [
        {"qmigrate_qemu_version": "backports"},
        {"qmigrate_qemu_version": "/usr/local/bin/qemu-system-x86_64"},
        {"qmigrate_qemu_version": {"labsrc": "distro", "labdst": "backports"}},
        {"qmigrate_qemu_version": {"default": "backports", "labsrc": "distro"}},
        {"vm_machine": "pc-i440fx-7.2"},
        {"vm_machine": "pc-q35-10.0"},
    ],
)
def test_which_qemu_and_machine_type_in_any_form_pass(extra):
    assert check(extra) == {}


@pytest.mark.parametrize(
    ("extra", "variable", "says"),
    [
        ({"migration_port": 70000}, "migration_port", "out of range"),
        ({"migration_port": "0"}, "migration_port", "out of range"),
        ({"migration_port": "http"}, "migration_port", "is not an int"),
        ({"migration_max_bandwidth": "-1"}, "migration_max_bandwidth", "out of range"),
        ({"migration_max_bandwidth": "4e6x"}, "migration_max_bandwidth", "is not an int"),
        ({"migration_downtime_limit": 3_000_000}, "migration_downtime_limit", "out of range"),
        ({"migration_timeout": -1}, "migration_timeout", "more than 0"),
        ({"migration_timeout": "inf"}, "migration_timeout", "not a finite number"),
        ({"migration_timeout": "nan"}, "migration_timeout", "not a finite number"),
        ({"migration_poll_interval": 0}, "migration_poll_interval", "more than 0"),
        ({"migration_postcopy": "maybe"}, "migration_postcopy", "is not a bool"),
        ({"migration_ping_count": 0}, "migration_ping_count", "out of range"),
        ({"migration_transport": "carrier-pigeon"}, "migration_transport", "not one of tcp, unix"),
        ({"migration_transport": "unix"}, "migration_transport", "the source's own host"),
        ({"migration_uri": "exec:touch /tmp/x"}, "migration_uri", "exec: runs a shell"),
        ({"migration_uri": "file:/tmp/vm.state"}, "migration_uri", "migration_allow_any_uri"),
        ({"migration_uri": "tcp:8.8.8.8:4444"}, "migration_uri", "experiment address 10.10.1.2"),
        ({"migration_uri": "tcp:10.10.1.2:99999"}, "migration_uri", "is not a port"),
        ({"migration_uri": "unix:/tmp/m.sock"}, "migration_uri", "same-host"),
        (
            {"qmigrate_destination": "labsrc", "migration_uri": "unix:/tmp/m.sock"},
            "migration_uri",
            "runtime directory (/run/qmigrate/labsrc/vm0-incoming/)",
        ),
        ({"migration_run_id": "../../elsewhere"}, "migration_run_id", "not a safe name"),
        ({"migration_run_id": "a/b"}, "migration_run_id", "not a safe name"),
        ({"qmigrate_vm_name": "vm 0"}, "qmigrate_vm_name", "not a safe name"),
        ({"qmigrate_project_group": "x,y"}, "qmigrate_project_group", "not a safe name"),
        ({"vm_tap": "tap-with-a-long-name0"}, "vm_tap", "at most 15"),
        ({"probe_interfaces": ["ens1f0", "a/b"]}, "probe_interfaces", "interface name"),
        ({"qmigrate_runtime_dir": "/run/q,x"}, "qmigrate_runtime_dir", "without ','"),
        ({"vm_runtime_dir": "/run/q"}, "vm_runtime_dir", "from qmigrate_runtime_dir"),
        ({"vm_network_taps": ["tap0"]}, "vm_network_taps", "from qmigrate_vm_count"),
        ({"vm_profile": "seed"}, "vm_profile", "from qmigrate_profile"),
        ({"vm_disk": "relative.img"}, "vm_disk", "absolute path"),
        ({"vm_memory": "12x"}, "vm_memory", "is not a size"),
        ({"vm_memory": 8}, "vm_memory", "too small"),
        ({"vm_cpus": 0}, "vm_cpus", "out of range"),
        ({"vm_mac": "53:55:00:d1:55:01"}, "vm_mac", "multicast"),
        ({"vm_mac": "52:55:00:d1:55"}, "vm_mac", "not a MAC"),
        ({"vm_guest_address": "10.10.1.2/24"}, "vm_guest_address", "address of host labdst"),
        ({"vm_guest_address": "10.10.1.0/24"}, "vm_guest_address", "not a host address"),
        ({"vm_guest_address": "10.10.1.100"}, "vm_guest_address", "prefix length"),
        ({"vm_ssh_forward": "127.0.0.1:99999"}, "vm_ssh_forward", "address:port"),
        ({"qmigrate_vm_count": 33}, "qmigrate_vm_count", "out of range"),
        ({"qmigrate_vm_count": 2, "qmigrate_profile": "seed"}, "qmigrate_vm_count", "minimal"),
        (
            {"qmigrate_vm_count": 2, "migration_port": 5000},
            "migration_port",
            "migration_port + its",
        ),
        ({"qmigrate_vm_count": 2, "migration_run_id": "x"}, "migration_run_id", "its own record"),
        ({"qmigrate_profile": "fancy"}, "qmigrate_profile", "not one of minimal, seed"),
        ({"qmigrate_prepare": "sometimes"}, "qmigrate_prepare", "not one of auto, always, skip"),
        ({"qmigrate_source": "elsewhere"}, "qmigrate_source", "not a host of the hypervisors"),
        (
            {"qmigrate_destination": "labsrc", "qmigrate_reverse": True},
            "qmigrate_reverse",
            "no way back",
        ),
        ({"migration_destination": "labclient"}, "migration_destination", "qmigrate_destination"),
        ({"vm_name": "other"}, "vm_name", "set by the playbooks"),
        ({"migration_capabilities": "multifd=on"}, "migration_capabilities", "not a mapping"),
        ({"migration_capabilities": {"warp-drive": True}}, "migration_capabilities", "warp-drive"),
        (
            {"migration_capabilities": {"multfd": True}},
            "migration_capabilities",
            "did you mean multifd",
        ),
        (
            {"migration_capabilities": {"multifd": "maybe"}},
            "migration_capabilities",
            "true or false",
        ),
        ({"migration_parameters": {"multifd-channels": 0}}, "migration_parameters", "out of range"),
        ({"migration_parameters": {"max-bandwidth": "fast"}}, "migration_parameters", "integer"),
        ({"migration_parameters": {"mode": "magic"}}, "migration_parameters", "not one of normal"),
        ({"probe_duration": 900}, "probe_duration", "out of range"),
        ({"probe_ping_interval": 0.0001}, "probe_ping_interval", "out of range"),
        ({"probe_workload": "nginx"}, "probe_workload", "not one of none, redis, memcached"),
        ({"probe_workload": "redis"}, "probe_workload", "qmigrate_profile=seed"),
        (
            {"probe_workload": "redis", "qmigrate_profile": "seed", "migration_profile": "no"},
            "probe_workload",
            "set migration_profile true",
        ),
        ({"probe_workload_rate": "fast"}, "probe_workload_rate", "is not a float"),
        ({"probe_workload_rate": "0"}, "probe_workload_rate", "more than 0"),
        (
            {
                "probe_workload": "redis",
                "qmigrate_profile": "seed",
                "probe_workload_rate": 99999,
                "probe_duration": 30,
            },
            "probe_workload_rate",
            "more than 2,000,000 requests",
        ),
        ({"probe_workload_records": "0"}, "probe_workload_records", "out of range"),
        ({"probe_workload_value_size": "1k"}, "probe_workload_value_size", "is not an int"),
        ({"probe_workload_connections": 2000}, "probe_workload_connections", "out of range"),
        ({"probe_workload_timeout": "0"}, "probe_workload_timeout", "more than 0"),
        ({"probe_workload_mix": "f"}, "probe_workload_mix", "not one of a, b, c"),
        ({"probe_workload_keys": "hot"}, "probe_workload_keys", "not one of uniform, zipfian"),
        ({"qmigrate_qemu_version": "10.0"}, "qmigrate_qemu_version", "'10.0' is not a QEMU"),
        (
            {"qmigrate_qemu_version": {"labsrc": "distro", "labdst": "newest"}},
            "qmigrate_qemu_version",
            "['labdst']: 'newest' is not a QEMU",
        ),
        (
            {"qmigrate_qemu_version": {"labdts": "backports"}},
            "qmigrate_qemu_version",
            "'labdts' is not a host of the inventory (nor default); did you mean labdst?",
        ),
        ({"vm_machine": "pc,accel=kvm"}, "vm_machine", "is not a safe name"),
        ({"qemu_version": "backports"}, "qemu_version", "set by the playbooks"),
        ({"vm_qemu_binary": "/usr/bin/qemu"}, "vm_qemu_binary", "set by the playbooks"),
        ({"lab_subnet": "8.8.8.0/24"}, "lab_subnet", "not a private network"),
        ({"lab_subnet": "10.10.1.0/33"}, "lab_subnet", "not an IPv4 network"),
    ],
)
def test_bad_input_is_refused_naming_the_variable(extra, variable, says):
    problems = check(extra)

    assert variable in problems, problems
    assert says in problems[variable]


def test_a_bad_inventory_value_is_refused_like_an_extra_var():
    problems = check(migration_port="70000")

    assert "out of range" in problems["migration_port"]


def test_a_per_pair_port_in_the_inventory_is_fine_with_several_pairs():
    assert check({"qmigrate_vm_count": 3}, migration_port=5000) == {}


def test_a_value_on_one_host_only_names_the_host():
    hostvars = {host: {**STUDY} for host in GROUPS["all"]}
    for host, address in ADDRESSES.items():
        hostvars[host]["experiment_address"] = address
    hostvars["labdst"]["vm_cpus"] = "many"

    problems = Inputs(hostvars, {}, GROUPS, SPECS, memory_mib).check()

    assert [(p.variable, p.hosts) for p in problems] == [("vm_cpus", ("labdst",))]


def test_a_template_that_fails_is_reported_when_nothing_else_explains_it():
    class Failing(dict):
        def __getitem__(self, name):
            if name == "qmigrate_guest_kernel":
                raise ValueError("'shared_storage_dir' is undefined")
            return super().__getitem__(name)

    hostvars = {host: Failing(STUDY, qmigrate_guest_kernel="{{ x }}") for host in GROUPS["all"]}

    problems = Inputs(hostvars, {}, GROUPS, SPECS, memory_mib).check()

    assert [p.variable for p in problems] == ["qmigrate_guest_kernel"]
    assert "cannot be evaluated: 'shared_storage_dir' is undefined" in problems[0].problem


def test_an_inventory_setting_what_the_playbooks_wire_is_refused_naming_the_hosts():
    hostvars = {host: dict(STUDY) for host in GROUPS["all"]}
    hostvars["labdst"]["vm_profile"] = "seed"

    problems = Inputs(hostvars, {}, GROUPS, SPECS, memory_mib).check()

    assert [(p.variable, p.hosts) for p in problems] == [("vm_profile", ("labdst",))]
    assert "set by the playbooks from qmigrate_profile" in problems[0].problem


def plan(extra: dict[str, Any] | None = None, **inventory: Any) -> dict[str, Any] | None:
    hostvars = {}
    for host in GROUPS["all"]:
        hostvars[host] = {**STUDY, **inventory, **(extra or {})}
        if host in ADDRESSES:
            hostvars[host]["experiment_address"] = ADDRESSES[host]
    inputs = Inputs(hostvars, extra or {}, GROUPS, SPECS, memory_mib)
    assert inputs.check() == []
    return inputs.plan(qmigrate_vms, migration_default_uri, migration_settings)


def test_the_plan_numbers_the_vms_from_the_roles_defaults():
    made = plan()

    assert (made["source"], made["destination"], made["colocated"]) == ("labsrc", "labdst", False)
    (vm,) = made["vms"]
    defaults = {
        name: SPECS[name]["default"]
        for name in ("vm_guest_address", "vm_mac", "migration_port", "vm_ssh_forward")
    }
    assert vm["name"] == SPECS["qmigrate_vm_name"]["default"] == "vm0"
    assert vm["destination"] == "vm0"
    assert vm["address"] == defaults["vm_guest_address"]
    assert vm["mac"] == defaults["vm_mac"]
    assert vm["port"] == defaults["migration_port"]
    assert vm["ssh_forward"] == defaults["vm_ssh_forward"]
    assert vm["tap"] == "tap0"


def test_the_plan_takes_extra_vars_as_strings_reversed_and_same_host():
    made = plan({"qmigrate_reverse": "true", "qmigrate_vm_count": "2"}, migration_port="5000")

    assert (made["source"], made["destination"]) == ("labdst", "labsrc")
    assert [(v["name"], v["port"]) for v in made["vms"]] == [("vm0", 5000), ("vm1", 5001)]

    made = plan({"qmigrate_destination": "labsrc", "qmigrate_vm_name": "guest"})

    assert made["colocated"] is True
    assert [(v["name"], v["destination"]) for v in made["vms"]] == [("guest", "guest-incoming")]


def test_the_plan_gives_each_destination_what_its_migration_sets():
    made = plan()

    (vm,) = made["vms"]
    # the migration role's defaults: uncapped, the downtime limit, one stream
    assert vm["incoming"] == {
        "uri": "tcp:10.10.1.2:4444",
        "capabilities": {},
        "parameters": {"max-bandwidth": 0, "downtime-limit": 300},
    }

    made = plan(
        {"qmigrate_vm_count": "2", "migration_multifd_channels": "4"},
        migration_capabilities={"auto-converge": True},
    )

    # the first pair's only: further pairs migrate from stand-ins of the source host,
    # which do not have its host and group vars
    first, second = made["vms"]
    assert first["incoming"]["uri"] == "tcp:10.10.1.2:4444"
    assert first["incoming"]["capabilities"] == {"multifd": True, "auto-converge": True}
    assert first["incoming"]["parameters"]["multifd-channels"] == 4
    assert "incoming" not in second

    made = plan({"qmigrate_destination": "labsrc", "migration_transport": "unix"})

    assert made["vms"][0]["incoming"]["uri"] == (
        "unix:/run/qmigrate/labsrc/vm0-incoming/migration.sock"
    )

    # the role writes the directory as given: the URIs must be the same string
    made = plan(
        {"qmigrate_destination": "labsrc", "migration_transport": "unix"},
        qmigrate_runtime_dir="/run/qmigrate/",
    )

    assert made["vms"][0]["incoming"]["uri"] == (
        "unix:/run/qmigrate//labsrc/vm0-incoming/migration.sock"
    )


def test_no_plan_without_hypervisors():
    inputs = Inputs({"localhost": {}}, {}, {"all": ["localhost"]}, SPECS, memory_mib)

    assert inputs.plan(qmigrate_vms, migration_default_uri, migration_settings) is None
