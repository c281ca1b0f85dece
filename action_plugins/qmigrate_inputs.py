# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every input of a run, checked on the controller before any host is touched.

The roles' argument specs say each variable's type and choices; this adds what a spec
cannot say (ranges, safe names, addresses, migration URIs, QEMU's capabilities and
parameters, variables that would collapse several VM pairs into one) and checks the
variables of every host as the inventory and the extra vars make them. It runs in the
controller's process (no module is sent anywhere), so a bad input is refused in about a
second and nothing has changed. Documentation: library/qmigrate_inputs.py.
"""

from __future__ import annotations

import difflib
import glob
import ipaddress
import math
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.validation import (
    check_type_bool,
    check_type_float,
    check_type_int,
)
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import filter_loader
from ansible.utils.vars import load_extra_vars

# -- what a spec cannot say -----------------------------------------------------------

# The study's own variables (no role owns them; inventories and -e set them): their spec,
# written like a role's.

INF = math.inf
# name: (lowest, highest, whether the lowest itself is refused)
RANGES: dict[str, tuple[float, float, bool]] = {
    "migration_port": (1, 65535, False),
    "migration_max_bandwidth": (0, 2**64 - 1, False),
    "migration_downtime_limit": (0, 2_000_000, False),  # QEMU's limit: 2000 s
    "migration_multifd_channels": (1, 255, False),
    "migration_postcopy_after_passes": (1, 10_000, False),
    "migration_timeout": (0, 1e6, True),
    "migration_poll_interval": (0, 60, True),
    "migration_heartbeat_timeout": (1, 3600, False),
    "migration_heartbeat_max_gap": (0, 1e6, False),
    "migration_ping_count": (1, 100, False),
    "probe_duration": (0, 600, True),
    "probe_lead": (0, 600, False),
    "probe_tcp_port": (1, 65535, False),
    "probe_tcp_interval": (0.1, 60, False),
    "probe_ping_interval": (0.002, 60, False),
    "probe_counter_interval": (0.01, 60, False),
    "probe_link_seconds": (0, 60, False),
    "probe_link_port": (1, 65535, False),
    "probe_workload_rate": (0, 100_000, True),
    "probe_workload_records": (1, 10_000_000, False),
    "probe_workload_value_size": (1, 1_048_576, False),
    "probe_workload_connections": (1, 1024, False),
    "probe_workload_timeout": (0, 60, True),
    "qmigrate_vm_count": (1, 32, False),
    "vm_cpus": (1, 255, False),
    "vm_boot_timeout": (1, 3600, False),
    "vm_qmp_timeout": (1, 3600, False),
    "vm_colocated_port_offset": (1, 1000, False),
    "guest_kernel_build_jobs": (0, 1024, False),
    "qemu_apt_lock_timeout": (0, 86400, False),
    "lab_stop_timeout": (0, 3600, True),
}

# The migration role's variables its migration_settings filter takes, in its order.
SETTINGS = (
    "migration_defaults",
    "migration_postcopy",
    "migration_multifd_channels",
    "migration_max_bandwidth",
    "migration_downtime_limit",
    "migration_capabilities",
    "migration_parameters",
)

# Names that become file names, QEMU ids or option values: no '/', no '..', no comma,
# no space.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAMES = {
    "migration_vm": 64,
    "migration_destination_vm": 64,
    "vm_name": 64,
    "qmigrate_vm_name": 60,  # room for the numbers of further VMs
    "migration_run_id": 200,
    "qmigrate_project_group": 64,
    "vm_machine": 64,  # a QEMU machine type (-machine)
}
# Network interface names (the kernel's IFNAMSIZ: at most 15 characters).
INTERFACES = {
    "vm_tap",
    "vm_network_bridge",
    "vm_network_nic",
    "lab_nic",
    "lab_bridge",
    "lab_switch",
}
INTERFACE_LISTS = {"vm_network_taps", "probe_interfaces"}
IFNAME_MAX = 15
# Directories whose paths end up in QEMU options (unix:<dir>/...,server=on): absolute,
# without commas.
QEMU_DIRS = {"qmigrate_runtime_dir", "vm_runtime_dir", "migration_runtime_dir", "lab_runtime_dir"}
QEMU_FILES = {
    "vm_kernel",
    "vm_initrd",
    "vm_disk",
    "qmigrate_guest_kernel",
    "qmigrate_guest_initrd",
    "qmigrate_guest_disk",
    "shared_storage_dir",
}

# Set by the playbooks from the study's variables: given as extra vars they would
# override the playbooks' wiring (extra vars win over everything).
WIRED = {
    "migration_vm": "qmigrate_vm_name",
    "migration_destination_vm": "qmigrate_vm_name and qmigrate_destination",
    "migration_destination": "qmigrate_destination (and qmigrate_reverse)",
    "migration_source_host": "qmigrate_source (and qmigrate_reverse)",
    "migration_client": "the inventory's clients group",
    "vm_name": "qmigrate_vm_name",
    "vm_incoming": "qmigrate_source and qmigrate_destination",
    "vm_colocated": "qmigrate_destination",
    "vm_state": "playbooks/teardown.yml to stop VMs",
    "vm_profile": "qmigrate_profile",
    "guest_image_type": "qmigrate_profile",
    "vm_network_taps": "qmigrate_vm_count",
    "vm_runtime_dir": "qmigrate_runtime_dir",
    "qemu_version": "qmigrate_qemu_version",
    "vm_qemu_binary": "qmigrate_qemu_version",
    "vm_firmware_dirs": "qmigrate_qemu_version",
    "migration_runtime_dir": "qmigrate_runtime_dir",
    "lab_runtime_dir": "qmigrate_runtime_dir",
    "probe_source": "qmigrate_source (and qmigrate_reverse)",
    "probe_destination": "qmigrate_destination",
    "probe_client": "the inventory's clients group",
    "probe_target": "vm_guest_address",
}
# One value per VM pair: with more than one pair, set once they would be the same for all.
PER_PAIR_EXTRA = {
    "migration_port": "each pair listens on migration_port + its number: set the first "
    "pair's port in the inventory",
    "migration_guest_address": "each pair's guest has its own address: set vm_guest_address "
    "(the first pair's) in the inventory",
    "vm_guest_address": "each pair numbers its guest address from the first one: set it in "
    "the inventory",
    "vm_mac": "each pair numbers its MAC from the first one: set it in the inventory",
    "vm_tap": "each pair has its own TAP devices (tap<2i>, tap<2i+1>)",
    "vm_ssh_forward": "each pair numbers its forward from the first one: set it in the inventory",
}
PER_PAIR = {
    "migration_run_id": "each pair writes its own record",
    "migration_uri": "each pair migrates over its own port",
}

URI_OPT_IN = "migration_allow_any_uri"
# Which QEMU a host runs (distro, backports, a binary's path, or a mapping of hosts to
# those)
QEMU_VERSIONS = {"qmigrate_qemu_version", "qemu_version"}

# Migration capabilities and parameters of every QEMU version qmigrate knows (2.x to
# 10.x): a name outside these is a mistake whatever the QEMU. Whether the running QEMU
# has it is checked by qemu_migrate before anything starts.
CAPABILITIES = {
    "xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress", "events",
    "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
    "pause-before-switchover", "multifd", "x-multifd", "dirty-bitmaps",
    "postcopy-blocktime", "late-block-activate", "x-ignore-shared", "validate-uuid",
    "background-snapshot", "zero-copy-send", "postcopy-preempt", "switchover-ack",
    "dirty-limit", "mapped-ram",
}  # fmt: skip
U8, U32, U64 = 2**8 - 1, 2**32 - 1, 2**64 - 1
# name: ("int", lowest, highest) | ("bool",) | ("str",) | ("enum", choices) | ("list",)
PARAMETERS: dict[str, tuple[Any, ...]] = {
    "announce-initial": ("int", 1, 100_000),
    "announce-max": ("int", 1, 100_000),
    "announce-rounds": ("int", 0, 1000),
    "announce-step": ("int", 1, 10_000),
    "throttle-trigger-threshold": ("int", 1, 100),
    "cpu-throttle-initial": ("int", 1, 99),
    "cpu-throttle-increment": ("int", 1, 99),
    "cpu-throttle-tailslow": ("bool",),
    "tls-creds": ("str",),
    "tls-hostname": ("str",),
    "tls-authz": ("str",),
    "max-bandwidth": ("int", 0, U64),
    "avail-switchover-bandwidth": ("int", 0, U64),
    "downtime-limit": ("int", 0, 2_000_000),
    "x-checkpoint-delay": ("int", 0, U32),
    "multifd-channels": ("int", 1, U8),
    "xbzrle-cache-size": ("int", 0, U64),
    "max-postcopy-bandwidth": ("int", 0, U64),
    "max-cpu-throttle": ("int", 1, 99),
    "multifd-compression": ("enum", ("none", "zlib", "zstd", "qpl", "uadk", "qatzip")),
    "multifd-zlib-level": ("int", 0, 9),
    "multifd-zstd-level": ("int", 0, 20),
    "multifd-qatzip-level": ("int", 1, 9),
    "block-bitmap-mapping": ("list",),
    "x-vcpu-dirty-limit-period": ("int", 1, 1000),
    "vcpu-dirty-limit": ("int", 1, U64),
    "mode": ("enum", ("normal", "cpr-reboot", "cpr-transfer", "cpr-exec")),
    "zero-page-detection": ("enum", ("none", "legacy", "multifd")),
    "direct-io": ("bool",),
    "compress-level": ("int", 0, 9),
    "compress-threads": ("int", 1, U8),
    "compress-wait-thread": ("bool",),
    "decompress-threads": ("int", 1, U8),
    "block-incremental": ("bool",),
}
# RFC 1918's private networks: nothing else may be the lab's (not even a documentation
# range, which Python also calls private, and which a real network may use).
PRIVATE = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
BOOL_WORDS = {"true": True, "on": True, "yes": True, "1": True}
BOOL_WORDS.update({"false": False, "off": False, "no": False, "0": False})


@dataclass(frozen=True)
class Problem:
    variable: str
    problem: str
    hosts: tuple[str, ...] = field(default=(), compare=False)

    def text(self) -> str:
        return f"{self.variable}: {self.problem}"


class Invalid(Exception):
    """A value that cannot be used; the message says why (without the variable's name)."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- types, as the roles' argument specs give them ----------------------------------------


def coerce(value: Any, spec: Mapping[str, Any], name: str = "name") -> Any:
    """VALUE of the spec's type, converted the way Ansible users expect ("4000000" is a
    number, "off" is false), or Invalid."""
    kind = spec.get("type", "str")
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise TypeError
            value = check_type_int(value)
        elif kind == "float":
            if isinstance(value, bool):
                raise TypeError
            value = check_type_float(value)
            if not math.isfinite(value):
                raise Invalid(f"{_show(value)} is not a finite number")
        elif kind == "bool":
            value = check_type_bool(value)
        elif kind in ("str", "path"):
            if isinstance(value, (dict, list, bool)):
                raise TypeError
            value = "" if value is None else str(value)
        elif kind == "dict":
            if not isinstance(value, Mapping):
                hint = f"""-e '{{"{name}": {{"key": value}}}}'"""
                raise Invalid(f"{_show(value)} is not a mapping (give it as JSON: {hint})")
        elif kind == "list" and not isinstance(value, list):
            hint = f"""-e '{{"{name}": [...]}}'"""
            raise Invalid(f"{_show(value)} is not a list (give it as JSON: {hint})")
    except (TypeError, ValueError):
        raise Invalid(f"{_show(value)} is not {'an' if kind == 'int' else 'a'} {kind}") from None
    choices = spec.get("choices")
    if choices and value not in choices:
        raise Invalid(f"{_show(value)} is not one of {', '.join(map(str, choices))}")
    return value


def in_range(name: str, value: float) -> None:
    low, high, open_low = RANGES[name]
    if value < low or (open_low and value == low) or value > high:
        lowest = f"more than {low:g}" if open_low else f"at least {low:g}"
        raise Invalid(f"{_show(value)} is out of range ({lowest}, at most {high:g})")


def safe_name(value: str, longest: int, empty_ok: bool) -> None:
    if value == "" and empty_ok:
        return
    if not SAFE_NAME.match(value) or ".." in value or len(value) > longest:
        raise Invalid(
            f"{_show(value)} is not a safe name (letters, digits, '_', '.', '-'; no '..'; "
            f"at most {longest} characters)"
        )


def interface(value: Any) -> None:
    if not isinstance(value, str) or not SAFE_NAME.match(value) or len(value) > IFNAME_MAX:
        raise Invalid(
            f"{_show(value)} is not a network interface name (letters, digits, '_', '.', "
            f"'-'; at most {IFNAME_MAX} characters)"
        )


def qemu_path(value: str, directory: bool) -> None:
    if value == "" and not directory:
        return
    if not posixpath.isabs(value) or "," in value or ".." in value.split("/"):
        raise Invalid(
            f"{_show(value)} must be an absolute path without ',' or '..' (QEMU reads it "
            "inside its own comma-separated options)"
        )


def capability_value(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
        return BOOL_WORDS[value.strip().lower()]
    raise Invalid(f"{name}: {_show(value)} is not true or false (on/off, yes/no, 1/0)")


def parameter_value(name: str, value: Any) -> Any:
    kind = PARAMETERS[name]
    if kind[0] == "bool":
        return capability_value(name, value)
    if kind[0] == "int":
        try:
            if isinstance(value, bool):
                raise ValueError
            number = check_type_int(value)
        except (TypeError, ValueError):
            raise Invalid(f"{name}: {_show(value)} is not an integer") from None
        if not kind[1] <= number <= kind[2]:
            raise Invalid(f"{name}: {number} is out of range ({kind[1]} to {kind[2]})")
        return number
    if kind[0] == "enum":
        if value not in kind[1]:
            raise Invalid(f"{name}: {_show(value)} is not one of {', '.join(kind[1])}")
        return value
    if kind[0] == "list":
        if not isinstance(value, list):
            raise Invalid(f"{name}: {_show(value)} is not a list")
        return value
    if not isinstance(value, str) or "\n" in value:
        raise Invalid(f"{name}: {_show(value)} is not a one-line string")
    return value


def unknown_name(kind: str, name: str, known: Iterable[str]) -> Invalid:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return Invalid(f"{name} is not a migration {kind} of any QEMU version{hint}")


# -- the checks ---------------------------------------------------------------------------

_MISSING = object()


class Inputs:
    """The checks over every host's variables (HOSTVARS: host -> its variables, read
    lazily), the extra vars as given (EXTRA) and the inventory's GROUPS. SPECS is every
    variable's spec (type, choices); MEMORY_MIB reads a VM memory size and QEMU_BUILD
    which QEMU a host runs (the vm and qemu roles' filters)."""

    def __init__(
        self,
        hostvars: Mapping[str, Mapping[str, Any]],
        extra: Mapping[str, Any],
        groups: Mapping[str, list[str]],
        specs: Mapping[str, Mapping[str, Any]],
        memory_mib: Callable[[Any], int],
        qemu_build: Callable[..., dict] | None = None,
    ) -> None:
        self.hostvars = hostvars
        self.extra = extra
        self.groups = groups
        self.specs = specs
        self.memory_mib = memory_mib
        self.qemu_build = qemu_build
        self.found: dict[Problem, list[str]] = {}
        self.unreadable: dict[Problem, list[str]] = {}

    # reading -------------------------------------------------------------------------
    def hosts(self) -> list[str]:
        hosts = list(self.groups.get("all") or [])
        return hosts + [h for h in ("localhost",) if h not in hosts and h in self.hostvars]

    def raw(self, host: str, name: str) -> Any:
        """HOST's NAME as templated, _MISSING when not set (a role default then applies)."""
        variables = self.hostvars[host]
        if name not in variables:
            return _MISSING
        return variables[name]

    def value(self, host: str, name: str, default: Any = _MISSING) -> Any:
        """HOST's NAME, coerced to its spec's type; when not set or invalid (the invalid
        value is reported by check_variables), DEFAULT, or without one the default its
        role declares (its spec's: the same as the role's defaults/main.yml)."""
        if default is _MISSING:
            default = self.specs.get(name, {}).get("default", _MISSING)
        try:
            raw = self.raw(host, name)
            if raw is _MISSING:
                return default
            return coerce(raw, self.specs.get(name, {}))
        except Exception:  # reported where the variable itself is checked
            return default

    def report(self, name: str, problem: str, host: str | None = None) -> None:
        self.found.setdefault(Problem(name, problem), [])
        if host is not None:
            self.found[Problem(name, problem)].append(host)

    # the whole check ---------------------------------------------------------------------
    def check(self) -> list[Problem]:
        for host in self.hosts():
            self.check_variables(host)
        self.check_study()
        found = self.found or self.unreadable
        everywhere = set(self.hosts())
        problems = []
        for problem, hosts in found.items():
            on = tuple(dict.fromkeys(hosts))
            problems.append(
                Problem(problem.variable, problem.problem, () if set(on) >= everywhere else on)
            )
        return problems

    def check_variables(self, host: str) -> None:
        """Each variable HOST sets, by its spec and the rules above."""
        for name, spec in self.specs.items():
            try:
                raw = self.raw(host, name)
            except Exception as exc:  # a template that fails to render
                problem = Problem(name, f"cannot be evaluated: {exc}")
                self.unreadable.setdefault(problem, []).append(host)
                continue
            if raw is _MISSING:
                continue
            try:
                self.check_one(name, coerce(raw, spec, name))
            except Invalid as bad:
                self.report(name, str(bad), host)

    def check_one(self, name: str, value: Any) -> None:
        if name in RANGES:
            in_range(name, value)
        if name in NAMES:
            safe_name(
                value,
                NAMES[name],
                empty_ok=name in ("migration_run_id", "migration_destination_vm", "vm_machine"),
            )
        if name in INTERFACES:
            interface(value)
        if name in INTERFACE_LISTS:
            for item in value:
                if "{{" not in str(item):
                    interface(item)
        if name in QEMU_DIRS:
            qemu_path(value, directory=True)
        if name in QEMU_FILES:
            qemu_path(value, directory=False)
        if name == "vm_memory":
            try:
                mib = self.memory_mib(value)
            except Exception as exc:  # the filter's message says why
                raise Invalid(str(exc).removeprefix("VM spec memory: ")) from None
            if mib > 1024 * 1024:
                raise Invalid(f"{_show(value)} is more than 1 TiB")
        if name == "vm_mac":
            mac(value)
        if name in QEMU_VERSIONS and self.qemu_build is not None:
            for host in value if isinstance(value, dict) else [""]:
                try:
                    self.qemu_build(value, host)
                except AnsibleFilterError as exc:
                    # "qemu_version['labdst']: 'x' is not a QEMU": the entry, then why
                    raise Invalid(
                        str(exc).removeprefix("qemu_version").removeprefix(": ")
                    ) from None
        if name == "vm_ssh_forward":
            forward(value)
        if name in ("vm_guest_address", "experiment_address"):
            interface_address(value)
        if name == "migration_guest_address":
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise Invalid(f"{_show(value)} is not an IPv4 address") from None
        if name == "lab_subnet":
            private_subnet(value)
        if name == "migration_capabilities":
            for cap, state in value.items():
                if cap not in CAPABILITIES:
                    raise unknown_name("capability", cap, CAPABILITIES)
                capability_value(cap, state)
        if name == "migration_parameters":
            for param, setting in value.items():
                if param not in PARAMETERS:
                    raise unknown_name("parameter", param, PARAMETERS)
                parameter_value(param, setting)
        if name == "vm_colocated_taps":
            for tap in [*value, *value.values()]:
                interface(tap)

    def check_study(self) -> None:
        """What involves several variables or hosts: the hosts of the migration, its URI,
        the guest's address against the hosts', the VM pairs, the extra vars."""
        hypervisors = list(self.groups.get("hypervisors") or [])
        if not hypervisors:
            return
        first = hypervisors[0]
        source = self.value(first, "qmigrate_source")
        destination = self.value(first, "qmigrate_destination")
        for name, host in (("qmigrate_source", source), ("qmigrate_destination", destination)):
            if host is not _MISSING and host not in hypervisors:
                self.report(
                    name,
                    f"{_show(host)} is not a host of the hypervisors group "
                    f"({', '.join(hypervisors)})",
                )
        count = self.value(first, "qmigrate_vm_count")
        if count > 1 and self.value(first, "qmigrate_profile") == "seed":
            self.report(
                "qmigrate_vm_count",
                f"{count}: more than one VM needs the minimal profile; the seed profile's VMs "
                "would all boot its one writable disk",
            )
        self.check_workload(first)
        self.check_qemu_hosts(first)
        self.check_extra(count)
        self.check_wired()
        direction = self.direction()
        if direction is not None:
            src, dst = direction
            if self.value(first, "qmigrate_reverse") and src == dst:
                self.report(
                    "qmigrate_reverse",
                    f"a same-host migration ({src} to itself) has no way back; stop both VMs "
                    "(playbooks/teardown.yml) to start over",
                )
            self.check_migration(src, dst, count)
            self.check_guest_addresses(count)

    def check_qemu_hosts(self, host: str) -> None:
        """A mapping of hosts to QEMU versions names hosts of the inventory (a misspelt one
        would leave its host on the default without a word)."""
        versions = self.value(host, "qmigrate_qemu_version")
        if not isinstance(versions, dict):
            return
        known = set(self.hosts())
        for name in versions:
            if name != "default" and name not in known:
                close = difflib.get_close_matches(str(name), sorted(known), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.report(
                    "qmigrate_qemu_version",
                    f"{_show(name)} is not a host of the inventory (nor default){hint}",
                )

    def check_workload(self, host: str) -> None:
        """A service under load needs a guest that serves it, and the probes that run it."""
        workload = self.value(host, "probe_workload", "none")
        if workload == "none":
            return
        if self.value(host, "qmigrate_profile") != "seed":
            self.report(
                "probe_workload",
                f"{_show(workload)} needs the seed profile's Debian guest, which serves redis "
                "and memcached (-e qmigrate_profile=seed); the minimal profile's initramfs "
                "guest serves neither",
            )
        if not self.value(host, "migration_profile", False):
            self.report(
                "probe_workload",
                f"{_show(workload)} is run by the probes: set migration_profile true",
            )
        rate = self.value(host, "probe_workload_rate", 2000.0)
        duration = self.value(host, "probe_duration", 10.0)
        numbers = isinstance(rate, float | int) and isinstance(duration, float | int)
        if numbers and rate * duration > 2_000_000:
            self.report(
                "probe_workload_rate",
                f"{rate:g} requests a second for probe_duration {duration:g} s is more "
                "than 2,000,000 requests in one window",
            )

    def direction(self) -> tuple[str, str] | None:
        """The migration's source and destination hosts, qmigrate_reverse applied; None
        without hypervisors or when either is not one of them."""
        hypervisors = list(self.groups.get("hypervisors") or [])
        if not hypervisors:
            return None
        first = hypervisors[0]
        source = self.value(first, "qmigrate_source")
        destination = self.value(first, "qmigrate_destination")
        if source not in hypervisors or destination not in hypervisors:
            return None
        if self.value(first, "qmigrate_reverse"):
            return destination, source
        return source, destination

    def plan(
        self,
        number: Callable[..., list[dict[str, Any]]],
        default_uri: Callable[..., str],
        settings: Callable[..., dict[str, Any]],
    ) -> dict[str, Any] | None:
        """The run's migration, once its inputs passed: the source and destination hosts
        (qmigrate_reverse applied), whether they are one host, and the VMs, which NUMBER
        (the qmigrate_vms filter) counts up from the first VM's settings as the source
        host has them (set or its role's default). The first VM with what its migration
        sets on both QEMUs (incoming: the URI, capabilities and parameters, by the
        migration role's own filters DEFAULT_URI and SETTINGS, from the source host's
        variables), which running.yml's state check gives a fresh destination to listen
        with. None without hypervisors."""
        direction = self.direction()
        if direction is None:
            return None
        source, destination = direction
        first = self.groups["hypervisors"][0]
        colocated = source == destination
        vms = number(
            self.value(first, "qmigrate_vm_count"),
            self.value(source, "qmigrate_vm_name"),
            self.value(source, "vm_guest_address"),
            self.value(source, "vm_mac"),
            self.value(source, "migration_port"),
            self.value(source, "vm_ssh_forward"),
            colocated=colocated,
            profile=self.value(first, "qmigrate_profile"),
        )
        # The first pair's only: it migrates from the source host itself, whose variables
        # these are. Each further pair migrates from a stand-in of the source host
        # (direction.yml), which has the play's variables but not the source's host and
        # group vars: its migration role tells its destination to listen, as before.
        runtime = self.value(source, "qmigrate_runtime_dir")
        try:
            uri = default_uri(
                self.value(source, "migration_uri", ""),
                self.value(source, "migration_transport"),
                # as the migration role joins it (a trailing / stays in)
                f"{runtime}/{destination}/{vms[0]['destination']}",
                self.value(destination, "experiment_address", ""),
                vms[0]["port"],
            )
            # Under TLS the migration role tells the destination itself, with the
            # credentials it has just put in place.
            if not self.value(source, "migration_tls"):
                vms[0]["incoming"] = settings(uri, *(self.value(source, n) for n in SETTINGS))
        except AnsibleFilterError:
            pass  # no early listen: the migration role names what is missing

        return {"source": source, "destination": destination, "colocated": colocated, "vms": vms}

    def check_wired(self) -> None:
        """An inventory that sets what the playbooks wire (a play's vars_files override
        the inventory): its value would be ignored without a word."""
        for host in self.hosts():
            for name, source in WIRED.items():
                if name in self.extra:
                    continue  # reported as an extra var
                try:
                    if self.raw(host, name) is _MISSING:
                        continue
                except Exception:
                    pass  # set, but its template fails: set all the same
                self.report(name, f"is set by the playbooks from {source}; set that instead", host)

    def check_extra(self, count: int) -> None:
        for name in self.extra:
            if name in WIRED:
                self.report(name, f"is set by the playbooks from {WIRED[name]}; set that instead")
            elif count > 1 and name in PER_PAIR_EXTRA:
                self.report(name, f"with qmigrate_vm_count {count}, {PER_PAIR_EXTRA[name]}")

    def check_migration(self, src: str, dst: str, count: int) -> None:
        colocated = src == dst
        transport = self.value(src, "migration_transport")
        if transport == "unix" and not colocated:
            self.report(
                "migration_transport",
                f"unix works only when the destination is the source's own host (here {src} "
                f"to {dst}); use tcp",
            )
        for name, why in PER_PAIR.items():
            if count > 1 and self.value(src, name, ""):
                self.report(name, f"with qmigrate_vm_count {count}, {why}: leave it empty")
        uri = self.value(src, "migration_uri", "")
        if not uri:
            return
        if self.value(src, URI_OPT_IN, False):
            return
        scheme, _, rest = uri.partition(":")
        vm = self.value(src, "qmigrate_vm_name")
        if scheme == "tcp":
            self.check_tcp_uri(uri, rest, dst)
        elif scheme == "unix":
            runtime = self.value(src, "qmigrate_runtime_dir")
            own = posixpath.join(runtime, dst, f"{vm}-incoming" if colocated else vm)
            path = posixpath.normpath(rest)
            if not colocated:
                self.report(
                    "migration_uri", f"{_show(uri)}: a unix: URI needs a same-host migration"
                )
            elif not rest.startswith("/") or posixpath.dirname(path) != own or "," in rest:
                self.report(
                    "migration_uri",
                    f"{_show(uri)}: a unix: socket must be in the destination VM's runtime "
                    f"directory ({own}/)",
                )
        else:
            self.report(
                "migration_uri",
                f"{_show(uri)}: only tcp: (to the destination's experiment address) and unix: "
                f"(in the destination VM's runtime directory) are allowed; {scheme}: and the "
                f"other schemes QEMU knows (exec: runs a shell command as root on both "
                f"hypervisors) need {URI_OPT_IN}: true",
            )

    def check_tcp_uri(self, uri: str, rest: str, dst: str) -> None:
        host, _, port = rest.rpartition(":")
        address = self.value(dst, "experiment_address", "")
        wanted = address.split("/")[0] if address else None
        problems = []
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            problems.append(f"{_show(port)} is not a port (1-65535)")
        if wanted is not None and host != wanted:
            problems.append(f"it must go to the destination {dst}'s experiment address {wanted}")
        if problems:
            self.report("migration_uri", f"{_show(uri)}: {'; '.join(problems)}")

    def check_guest_addresses(self, count: int) -> None:
        hypervisors = list(self.groups.get("hypervisors") or [])
        first = hypervisors[0]
        address = self.value(first, "vm_guest_address")
        try:
            interface_address(address)
        except Invalid:
            return  # reported as the variable's own problem
        guest = ipaddress.IPv4Interface(address)
        taken = {}
        for host in self.hosts():
            own = self.value(host, "experiment_address", "")
            try:
                taken[ipaddress.IPv4Interface(own).ip] = host
            except ValueError:
                continue
        for i in range(count):
            ip = guest.ip + i
            where = f"the guest of VM {i} (" if count > 1 else "("
            if ip in taken:
                self.report("vm_guest_address", f"{where}{ip}) is the address of host {taken[ip]}")
            elif ip in (guest.network.network_address, guest.network.broadcast_address):
                self.report(
                    "vm_guest_address", f"{where}{ip}) is not a host address of {guest.network}"
                )
            elif ip not in guest.network:
                self.report(
                    "vm_guest_address", f"{count} guests from {guest} run out of {guest.network}"
                )
                return


def mac(value: str) -> None:
    octets = value.split(":")
    if len(octets) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{2}", o) for o in octets):
        raise Invalid(f"{_show(value)} is not a MAC address like 52:55:00:d1:55:01")
    if int(octets[0], 16) & 1:
        raise Invalid(f"{_show(value)} is a multicast MAC (its first octet is odd)")
    if int(octets[5], 16) == 0xFF:
        raise Invalid(f"{_show(value)} leaves no room to number further VMs (last octet ff)")


def forward(value: str) -> None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise Invalid(f"{_show(value)} is not address:port, like 127.0.0.1:10021")


def interface_address(value: str) -> None:
    if "/" not in value:
        raise Invalid(f"{_show(value)} needs its prefix length, like 10.10.1.100/24")
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise Invalid(f"{_show(value)} is not an IPv4 address/prefix") from None
    if iface.network.prefixlen < 31 and iface.ip in (
        iface.network.network_address,
        iface.network.broadcast_address,
    ):
        raise Invalid(f"{_show(value)} is not a host address of {iface.network}")


def private_subnet(value: str) -> None:
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise Invalid(f"{_show(value)} is not an IPv4 network") from None
    if not any(net.subnet_of(private) for private in PRIVATE):
        raise Invalid(
            f"{_show(value)} is not a private network (10.0.0.0/8, 172.16.0.0/12, "
            "192.168.0.0/16): the lab must never take an address that is routed elsewhere"
        )


class HostView(Mapping):
    """One host's variables as a play on it sees them, templated when read, with the magic
    variables (hostvars, groups) that inventory templates use. Ansible's own
    hostvars[host] templates without hostvars, so an inventory variable built from other
    hosts' (the lab's lab_hosts) cannot be read through it."""

    def __init__(self, hostvars: Any, templar: Any, host: str) -> None:
        self._hostvars = hostvars
        self._templar = templar
        self._host = host
        self._vars: Mapping[str, Any] | None = None
        self._engine: Any = None

    def _variables(self) -> Mapping[str, Any]:
        if self._vars is None:
            manager = self._hostvars._variable_manager
            host = self._hostvars._inventory.get_host(self._host)
            self._vars = manager.get_vars(host=host, include_hostvars=True)
            self._engine = self._templar.copy_with_new_env(available_variables=self._vars)
        return self._vars

    def __getitem__(self, name: str) -> Any:
        return self._engine.template(self._variables()[name]) if name in self else None

    def __contains__(self, name: object) -> bool:
        return name in self._variables()

    def __iter__(self) -> Any:
        return iter(self._variables())

    def __len__(self) -> int:
        return len(self._variables())


def load_specs(role_dirs: Iterable[str], loader: Any) -> dict[str, dict[str, Any]]:
    """Every option of every role's meta/argument_specs.yml (all entry points; the study's
    own variables are the qmigrate role's)."""
    paths = [
        path
        for roles in role_dirs
        for path in sorted(glob.glob(os.path.join(roles, "*", "meta", "argument_specs.yml")))
    ]
    specs: dict[str, dict[str, Any]] = {}
    for path in paths:
        data = loader.load_from_file(path) or {}
        for entry in (data.get("argument_specs") or {}).values():
            for name, option in (entry.get("options") or {}).items():
                specs.setdefault(name, dict(option))
    return specs


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        specs = load_specs(C.DEFAULT_ROLES_PATH, self._loader)
        hostvars = task_vars["hostvars"]
        inputs = Inputs(
            hostvars={host: HostView(hostvars, self._templar, host) for host in hostvars},
            extra=load_extra_vars(self._loader),
            groups=task_vars.get("groups") or {},
            specs=specs,
            memory_mib=filter_loader.get("qemu_memory_mib").j2_function,
            qemu_build=filter_loader.get("qemu_build").j2_function,
        )
        problems = inputs.check()
        prefixes = tuple(sorted({name.split("_")[0] + "_" for name in specs}))
        unknown = sorted(
            name
            for name in inputs.extra
            if name.startswith(prefixes) and name not in specs and not name.startswith("__")
        )
        warnings = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(specs), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"extra var {name} is not a variable of any qmigrate role{hint}")
        result.update(changed=False, checked=len(specs), invalid=[])
        if not problems:
            # What direction.yml applies: computed here, where every role's defaults are
            # known, instead of repeated there as default() filters.
            plan = inputs.plan(
                filter_loader.get("qmigrate_vms").j2_function,
                filter_loader.get("migration_default_uri").j2_function,
                filter_loader.get("migration_settings").j2_function,
            )
            if plan is not None:
                result["ansible_facts"] = {"qmigrate_plan": plan}
        if warnings:
            result["warnings"] = warnings
        if problems:
            lines = [
                p.text() + (f" (on {', '.join(p.hosts)})" if p.hosts else "") for p in problems
            ]
            result.update(
                failed=True,
                msg="Refused before anything changed: " + "; ".join(lines),
                invalid=[
                    {"variable": p.variable, "problem": p.problem, "hosts": list(p.hosts)}
                    for p in problems
                ],
            )
        return result
