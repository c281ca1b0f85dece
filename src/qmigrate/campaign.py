"""Campaigns: a study of many migrations, described in one YAML file.

A campaign names *methods* (how to migrate: qmigrate's defaults or the seed's, bandwidth,
downtime limit, multifd, postcopy, capabilities and parameters), *guests* (what to
migrate: profile, memory, vCPUs, workload), how many repetitions of each cell (a method
on a guest), the direction mode (one-way: the guest booted anew on the source before
each run; ping-pong: back and forth), whether the probes run, and a timeout per run.
The cells are the full matrix of methods and guests unless the file lists its runs.

This module reads and checks a campaign file (every mistake named by where it is, before
anything runs) and plans its runs: guest by guest (a guest's VMs are launched once for
all of its runs), and within a guest interleaved, repetition 1 of every method, then
repetition 2, ..., so that a drift in the machine's load spreads over all methods.
docs/campaigns.md describes the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qmigrate.errors import QmigrateError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SIZE = re.compile(r"^\s*[0-9]+\s*([KMGkmg](i?B)?)?\s*$")
DIRECTIONS = ("one-way", "ping-pong")
PROFILES = ("minimal", "seed")
DEFAULTS = ("qmigrate", "qemu")
# The vm role's own kernel command line (its default vm_append, still a template): a
# dirtying guest's arguments are appended to it.
PROFILE_APPEND = "{{ __vm_profile_append[vm_profile] | default('') }}"
# The dirtying workload's report on the serial console (roles/guest_image, qmigrate-dirty)
DIRTY_REPORT = r"qmigrate-dirty uptime=[0-9.]+ "
MAX_REPETITIONS = 1000
MAX_RUNS = 10000

TOP_KEYS = {
    "name": "the campaign's name (its results directory starts with it)",
    "description": "what the campaign asks, in a sentence or two",
    "repetitions": "how many times each cell runs (1 to 1000)",
    "direction": "one-way (the guest booted anew on the source before each run) or ping-pong",
    "probes": "whether each run is profiled (iperf3, ping, counters; true or false)",
    "timeout": "seconds a migration may take before it is cancelled",
    "baseline": "the method the others are compared with (default: the first)",
    "methods": "name -> how to migrate",
    "guests": "name -> what to migrate",
    "runs": "the cells to run, each {method, guest}, instead of every method on every guest",
}
METHOD_KEYS = {
    "defaults": "qmigrate (lifted bandwidth cap, downtime limit) or qemu (QEMU's own, as the seed)",
    "max_bandwidth": "bytes/s, 0 for no cap",
    "downtime_limit": "ms",
    "multifd_channels": "1 (off) to 255",
    "postcopy": "switch to postcopy after the first pass (true or false)",
    "capabilities": "QEMU migration capabilities, name -> true/false",
    "parameters": "QEMU migration parameters, name -> value",
    "timeout": "seconds this method's migration may take (default: the campaign's)",
    "tls": "encrypt the migration stream with TLS (true or false)",
}
GUEST_KEYS = {
    "profile": "minimal (the initramfs guest) or seed (the seed's Debian disk VM)",
    "memory": "MiB (256) or a size with a unit (262148K, 1G)",
    "cpus": "vCPUs, 1 to 64",
    "qemu": (
        "which QEMU the hosts run: distro, backports, a binary's path, or host -> one of "
        "those (as qmigrate_qemu_version)"
    ),
    "machine": "QEMU's machine type on both sides (pc-i440fx-7.2 between 7.2 and 10.0)",
    "workload": (
        "idle; {dirty: MiB/s, dirty_set: MiB} for the memory-dirtying (minimal) guest; or "
        "{service: redis or memcached, rate, mix, keys, records, value_size, connections} "
        "for a service under load in the seed guest"
    ),
}
WORKLOAD_KEYS = {
    "dirty": "MiB/s the guest rewrites",
    "dirty_set": "MiB of guest memory it rewrites (default 64)",
    "service": "redis or memcached: the seed guest's service the probes' client loads",
    "rate": "requests a second (default 2000)",
    "mix": "YCSB's a (50% reads), b (95%) or c (reads only); default a",
    "keys": "uniform or zipfian (default)",
    "records": "records in the data set (default 10000)",
    "value_size": "bytes of each value (default 1000)",
    "connections": "the client's connections (default 16)",
}
SERVICES = ("redis", "memcached")
# A service workload's keys: the probe role's variable each sets, and how it is checked.
SERVICE_VARS = {
    "rate": "probe_workload_rate",
    "mix": "probe_workload_mix",
    "keys": "probe_workload_keys",
    "records": "probe_workload_records",
    "value_size": "probe_workload_value_size",
    "connections": "probe_workload_connections",
}


class CampaignError(QmigrateError):
    """A campaign file that cannot run: PROBLEMS, each naming where it is."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{listed}")


@dataclass(frozen=True)
class Method:
    """How to migrate: the migration role's variables it sets (anything not set keeps the
    role's default)."""

    name: str
    variables: dict[str, Any] = field(default_factory=dict)

    def extra_vars(self) -> dict[str, Any]:
        return dict(self.variables)


@dataclass(frozen=True)
class Guest:
    """What to migrate: the vm role's variables it sets, and the workload's kernel
    arguments (appended to the profile's kernel command line)."""

    name: str
    variables: dict[str, Any] = field(default_factory=dict)
    dirty: int = 0
    dirty_set: int = 64
    # A service under load: the probe role's probe_workload* variables (none: idle)
    service: dict[str, Any] = field(default_factory=dict)

    @property
    def workload(self) -> str:
        if self.service:
            rate = self.service.get("probe_workload_rate", 2000)
            return f"{self.service['probe_workload']} under {rate:g} requests/s"
        return f"dirty {self.dirty} MiB/s over {self.dirty_set} MiB" if self.dirty else "idle"

    def kernel_args(self) -> str:
        if not self.dirty:
            return ""
        return f"qmigrate.dirty={self.dirty} qmigrate.dirty_set={self.dirty_set}"


@dataclass(frozen=True)
class Run:
    """One planned migration: the NUMBER-th of the campaign (from 1), REP-th repetition of
    METHOD on GUEST. REVERSE, in a ping-pong campaign, is the way back (destination to
    source), as the plan expects it; FRESH, in a one-way campaign, boots the guest anew
    on the source first."""

    number: int
    guest: str
    method: str
    rep: int
    reverse: bool = False
    fresh: bool = False

    @property
    def run_id(self) -> str:
        return f"{self.guest}-{self.method}-{self.rep:03d}"


@dataclass(frozen=True)
class Campaign:
    name: str
    description: str
    repetitions: int
    direction: str
    probes: bool
    timeout: float | None
    baseline: str
    methods: dict[str, Method]
    guests: dict[str, Guest]
    cells: tuple[tuple[str, str], ...]  # (method, guest), in the file's order
    source: str = ""

    def plan(self) -> list[Run]:
        """Every run, guest by guest; within a guest repetition by repetition, each
        repetition running every method of that guest in the file's order."""
        runs: list[Run] = []
        for guest in self.guests:
            methods = [method for method, of in self.cells if of == guest]
            turn = 0
            for rep in range(1, self.repetitions + 1):
                for method in methods:
                    runs.append(
                        Run(
                            number=len(runs) + 1,
                            guest=guest,
                            method=method,
                            rep=rep,
                            reverse=self.direction == "ping-pong" and turn % 2 == 1,
                            fresh=self.direction == "one-way",
                        )
                    )
                    turn += 1
        return runs

    def guest_vars(self, guest: str) -> dict[str, Any]:
        """The variables GUEST's runs share: the guest's (vm role), and the probes."""
        spec = self.guests[guest]
        extra: dict[str, Any] = {
            **spec.variables,
            **spec.service,
            "migration_profile": self.probes,
        }
        if spec.dirty:
            extra["vm_append"] = f"{PROFILE_APPEND} {spec.kernel_args()}"
            # Booted when the workload has filled its set and reported a second of
            # dirtying, not at the first heartbeat: every run starts from the same
            # steady rate, not from a fill still under way
            extra["vm_heartbeat_regex"] = DIRTY_REPORT
        return extra

    def variables(self) -> set[str]:
        """Every variable the campaign sets in some run (its guests', its methods', the
        timeout)."""
        names: set[str] = set()
        for guest in self.guests:
            names.update(self.guest_vars(guest))
        for run in self.plan():
            names.update(self.method_vars(run))
        return names

    def method_vars(self, run: Run) -> dict[str, Any]:
        """RUN's method variables (the migration role's), the campaign's timeout under
        the method's own: a round's vars in a ping-pong campaign (migration_rounds)."""
        extra: dict[str, Any] = {}
        if self.timeout is not None:
            extra["migration_timeout"] = self.timeout
        extra.update(self.methods[run.method].extra_vars())
        return extra

    def extra_vars(self, run: Run) -> dict[str, Any]:
        """The migration's variables for RUN as one migrate.yml takes them (besides where
        its record goes): the guest's, the probes, the method's and the timeout, and the
        direction."""
        return {
            **self.guest_vars(run.guest),
            **self.method_vars(run),
            "qmigrate_reverse": run.reverse,
        }


# -- reading and checking a campaign file --------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.found.append(f"{where}: {what}" if where else what)

    def unknown_keys(self, where: str, given: dict, known: dict[str, str]) -> None:
        for key in given:
            if key not in known:
                hint = ", ".join(known)
                self.add(f"{where}.{key}" if where else str(key), f"unknown key (known: {hint})")


def _mapping(problems: _Problems, where: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(where, f"must be a mapping, not {type(value).__name__} {value!r}")
        return {}
    return value


def _integer(problems: _Problems, where: str, value: Any, low: int, high: int | None) -> int | None:
    """VALUE as an integer in LOW..HIGH (a string of digits is read as one), or None with
    the problem noted."""
    number: int | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        number = int(value)
    if number is None:
        problems.add(where, f"{value!r} is not an integer")
        return None
    if number < low or (high is not None and number > high):
        upper = f" to {high}" if high is not None else " or more"
        problems.add(where, f"{number} is out of range ({low}{upper})")
        return None
    return number


def _boolean(problems: _Problems, where: str, value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "true",
        "yes",
        "on",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("true", "yes", "on")
    problems.add(where, f"{value!r} is not true or false")
    return None


def _seconds(problems: _Problems, where: str, value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        problems.add(where, f"{value!r} is not a positive number of seconds")
        return None
    return float(value)


def _choice(problems: _Problems, where: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if value in choices:
        return str(value)
    problems.add(where, f"{value!r} is not one of {', '.join(choices)}")
    return None


def _names(problems: _Problems, where: str, value: Any, what: str) -> dict:
    entries = _mapping(problems, where, value)
    if value is not None and not entries and isinstance(value, dict):
        problems.add(where, f"names no {what}")
    if value is None:
        problems.add(where, f"is required: at least one {what}")
    for name in entries:
        if not isinstance(name, str) or not NAME.match(name):
            problems.add(
                f"{where}.{name}",
                "is not a usable name (letters, digits, '_', '.', '-'; up to 64; it names "
                "the runs' directories)",
            )
    return entries


def _method(problems: _Problems, name: str, spec: Any) -> Method:
    where = f"methods.{name}"
    spec = _mapping(problems, where, spec)
    problems.unknown_keys(where, spec, METHOD_KEYS)
    variables: dict[str, Any] = {}
    if "defaults" in spec:
        chosen = _choice(problems, f"{where}.defaults", spec["defaults"], DEFAULTS)
        if chosen:
            variables["migration_defaults"] = chosen
    for key, low, high in (
        ("max_bandwidth", 0, None),
        ("downtime_limit", 0, 2_000_000),
        ("multifd_channels", 1, 255),
    ):
        if key in spec:
            number = _integer(problems, f"{where}.{key}", spec[key], low, high)
            if number is not None:
                variables[f"migration_{key}"] = number
    if "postcopy" in spec:
        postcopy = _boolean(problems, f"{where}.postcopy", spec["postcopy"])
        if postcopy is not None:
            variables["migration_postcopy"] = postcopy
    if "capabilities" in spec:
        caps = _mapping(problems, f"{where}.capabilities", spec["capabilities"])
        checked = {}
        for cap, on in caps.items():
            flag = _boolean(problems, f"{where}.capabilities.{cap}", on)
            if flag is not None:
                checked[str(cap)] = flag
        variables["migration_capabilities"] = checked
    if "parameters" in spec:
        params = _mapping(problems, f"{where}.parameters", spec["parameters"])
        for param, value in params.items():
            if isinstance(value, (dict, list)) or value is None:
                problems.add(f"{where}.parameters.{param}", f"{value!r} is not a single value")
        variables["migration_parameters"] = dict(params)
    if "timeout" in spec:
        timeout = _seconds(problems, f"{where}.timeout", spec["timeout"])
        if timeout is not None:
            variables["migration_timeout"] = timeout
    if "tls" in spec:
        tls = _boolean(problems, f"{where}.tls", spec["tls"])
        if tls is not None:
            variables["migration_tls"] = tls
    if variables.get("migration_defaults") == "qemu":
        tuned = sorted(
            key for key in ("max_bandwidth", "downtime_limit", "multifd_channels") if key in spec
        )
        if tuned:
            problems.add(
                where,
                f"defaults: qemu keeps QEMU's own settings, so {', '.join(tuned)} would be "
                "ignored; set them as parameters (max-bandwidth, downtime-limit, "
                "multifd-channels) instead",
            )
    return Method(name, variables)


def _is_qemu(value: Any) -> bool:
    return isinstance(value, str) and (
        value in ("distro", "backports") or (value.startswith("/") and "," not in value)
    )


def _guest(problems: _Problems, name: str, spec: Any) -> Guest:
    where = f"guests.{name}"
    spec = _mapping(problems, where, spec)
    problems.unknown_keys(where, spec, GUEST_KEYS)
    variables: dict[str, Any] = {}
    if "profile" in spec:
        profile = _choice(problems, f"{where}.profile", spec["profile"], PROFILES)
        if profile:
            variables["qmigrate_profile"] = profile
    if "memory" in spec:
        memory = spec["memory"]
        if isinstance(memory, bool) or not SIZE.match(str(memory)):
            problems.add(
                f"{where}.memory",
                f"{memory!r} is not a size; use MiB (256) or a size with a unit (262148K, 1G)",
            )
        else:
            variables["vm_memory"] = memory
    if "cpus" in spec:
        cpus = _integer(problems, f"{where}.cpus", spec["cpus"], 1, 64)
        if cpus is not None:
            variables["vm_cpus"] = cpus
    if "qemu" in spec:
        qemu = spec["qemu"]
        if isinstance(qemu, dict):
            qemu = {str(host): value for host, value in qemu.items()}
            wrong = [f"{h}: {v!r}" for h, v in qemu.items() if not _is_qemu(v)]
        else:
            wrong = [] if _is_qemu(qemu) else [repr(qemu)]
        if wrong:
            problems.add(
                f"{where}.qemu",
                f"{', '.join(wrong)} is not a QEMU: distro, backports or the absolute path "
                "of a qemu-system-x86_64 binary (or host -> one of those)",
            )
        else:
            variables["qmigrate_qemu_version"] = qemu
    if "machine" in spec:
        machine = spec["machine"]
        if not isinstance(machine, str) or not NAME.match(machine):
            problems.add(f"{where}.machine", f"{machine!r} is not a QEMU machine type")
        else:
            variables["vm_machine"] = machine
    dirty, dirty_set = 0, 64
    service: dict[str, Any] = {}
    workload = spec.get("workload", "idle")
    if workload != "idle":
        load = _mapping(problems, f"{where}.workload", workload) if workload is not None else {}
        if isinstance(workload, str) or workload is None:
            problems.add(
                f"{where}.workload", f"{workload!r} is not idle, a dirty workload nor a service"
            )
        problems.unknown_keys(f"{where}.workload", load, WORKLOAD_KEYS)
        if load and "service" in load:
            service = _service(problems, f"{where}.workload", load, variables)
        elif load and "dirty" not in load:
            problems.add(f"{where}.workload", "needs dirty (MiB/s) or service")
        if "dirty" in load:
            dirty = _integer(problems, f"{where}.workload.dirty", load["dirty"], 1, 100_000) or 0
        if "dirty_set" in load:
            dirty_set = (
                _integer(problems, f"{where}.workload.dirty_set", load["dirty_set"], 1, 1_000_000)
                or 64
            )
        if dirty and variables.get("qmigrate_profile") == "seed":
            problems.add(
                f"{where}.workload",
                "the dirtying workload runs in the minimal (initramfs) guest only",
            )
    return Guest(name, variables, dirty, dirty_set, service)


def _service(
    problems: _Problems, where: str, load: dict[str, Any], variables: dict[str, Any]
) -> dict[str, Any]:
    """A service workload's probe variables, checked (it needs the seed's Debian guest)."""
    out: dict[str, Any] = {}
    if "dirty" in load or "dirty_set" in load:
        problems.add(where, "is a service or a dirty workload, not both")
    chosen = _choice(problems, f"{where}.service", load["service"], SERVICES)
    if chosen:
        out["probe_workload"] = chosen
    if variables.get("qmigrate_profile") != "seed":
        problems.add(
            where, "a service runs in the seed guest only (profile: seed); the minimal has none"
        )
    ranges = {
        "rate": (1, 100_000),
        "records": (1, 10_000_000),
        "value_size": (1, 1_048_576),
        "connections": (1, 1024),
    }
    for key, (low, high) in ranges.items():
        if key in load:
            value = _integer(problems, f"{where}.{key}", load[key], low, high)
            if value is not None:
                out[SERVICE_VARS[key]] = value
    for key, choices in (("mix", ("a", "b", "c")), ("keys", ("uniform", "zipfian"))):
        if key in load:
            value = _choice(problems, f"{where}.{key}", load[key], choices)
            if value:
                out[SERVICE_VARS[key]] = value
    return out


def parse(data: Any, source: str = "campaign") -> Campaign:
    """The campaign DATA describes (a campaign file's YAML), checked: CampaignError lists
    every problem, each named by its place in the file."""
    problems = _Problems()
    if not isinstance(data, dict):
        raise CampaignError(source, [f"a campaign is a mapping of {', '.join(TOP_KEYS)}"])
    problems.unknown_keys("", data, TOP_KEYS)

    name = data.get("name")
    if name is None:
        name = Path(source).stem if source != "campaign" else ""
    if not isinstance(name, str) or not NAME.match(name):
        problems.add("name", f"{name!r} is not a usable name (letters, digits, '_', '.', '-')")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.add("description", "must be text")
        description = ""
    repetitions = _integer(problems, "repetitions", data.get("repetitions", 1), 1, MAX_REPETITIONS)
    direction = _choice(problems, "direction", data.get("direction", "one-way"), DIRECTIONS)
    probes = _boolean(problems, "probes", data.get("probes", False))
    timeout = data.get("timeout")
    if timeout is not None:
        timeout = _seconds(problems, "timeout", timeout)

    method_specs = _names(problems, "methods", data.get("methods"), "method")
    guest_specs = _names(problems, "guests", data.get("guests"), "guest")
    methods = {str(n): _method(problems, str(n), s) for n, s in method_specs.items()}
    guests = {str(n): _guest(problems, str(n), s) for n, s in guest_specs.items()}

    for guest in guests.values():
        if guest.service and probes is False:
            problems.add(
                f"guests.{guest.name}.workload",
                "a service under load is measured by the probes: set probes: true",
            )

    baseline = data.get("baseline", next(iter(methods), ""))
    if methods and baseline not in methods:
        problems.add("baseline", f"{baseline!r} is not one of the methods ({', '.join(methods)})")

    cells: list[tuple[str, str]] = []
    if "runs" in data:
        listed = data["runs"]
        if not isinstance(listed, list) or not listed:
            problems.add("runs", "must be a non-empty list of {method, guest}")
            listed = []
        for index, cell in enumerate(listed):
            where = f"runs[{index}]"
            if not isinstance(cell, dict):
                problems.add(where, f"must be a mapping {{method, guest}}, not {cell!r}")
                continue
            problems.unknown_keys(where, cell, {"method": "", "guest": ""})
            method, guest = cell.get("method"), cell.get("guest")
            if method not in methods:
                problems.add(f"{where}.method", f"{method!r} is not one of the methods")
            if guest not in guests:
                problems.add(f"{where}.guest", f"{guest!r} is not one of the guests")
            if (method, guest) in cells:
                problems.add(where, f"{method} on {guest} is listed twice")
            if method in methods and guest in guests and (method, guest) not in cells:
                cells.append((method, guest))
    else:
        cells = [(m, g) for g in guests for m in methods]

    if repetitions and len(cells) * repetitions > MAX_RUNS:
        problems.add(
            "repetitions",
            f"{len(cells)} cells x {repetitions} repetitions is more than {MAX_RUNS} runs",
        )
    used = {guest for _, guest in cells}
    if "runs" in data and cells:
        for guest in guests:
            if guest not in used:
                problems.add(f"guests.{guest}", "no run uses it (runs)")
    if methods and guests and baseline in methods and cells:
        lacking = sorted(g for g in guests if g in used and (baseline, g) not in cells)
        if lacking and "baseline" in data:
            problems.add("baseline", f"{baseline} does not run on {', '.join(lacking)}")

    if problems.found:
        raise CampaignError(source, problems.found)
    return Campaign(
        name=str(name),
        description=description,
        repetitions=int(repetitions or 1),
        direction=str(direction),
        probes=bool(probes),
        timeout=float(timeout) if timeout is not None else None,
        baseline=str(baseline),
        methods=methods,
        guests=guests,
        cells=tuple(cells),
        source=source,
    )


def load(path: str | Path) -> Campaign:
    """The campaign file PATH, read and checked (CampaignError on any problem)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CampaignError(str(path), [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CampaignError(str(path), [f"is not YAML: {exc}"]) from None
    return parse(data, str(path))
