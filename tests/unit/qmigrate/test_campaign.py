"""Campaign files (src/qmigrate/campaign.py): every mistake refused with its place in the
file before anything runs, and the plan of a good one."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from qmigrate.campaign import DIRTY_REPORT, PROFILE_APPEND, CampaignError, load, parse
from tests import ROOT

GOOD = {
    "name": "compare",
    "repetitions": 2,
    "methods": {
        "seed": {"defaults": "qemu"},
        "defaults": {},
        "multifd4": {"multifd_channels": 4},
    },
    "guests": {"idle": {"memory": "262148K"}, "dirty64": {"workload": {"dirty": 64}}},
}


def problems(data: object) -> list[str]:
    with pytest.raises(CampaignError) as refused:
        parse(data, "bad.yml")
    return refused.value.problems


def test_a_good_campaign_plans_every_cell_interleaved_guest_by_guest():
    campaign = parse(GOOD, "compare.yml")

    runs = [(r.guest, r.method, r.rep) for r in campaign.plan()]

    assert runs == [
        ("idle", "seed", 1),
        ("idle", "defaults", 1),
        ("idle", "multifd4", 1),
        ("idle", "seed", 2),
        ("idle", "defaults", 2),
        ("idle", "multifd4", 2),
        ("dirty64", "seed", 1),
        ("dirty64", "defaults", 1),
        ("dirty64", "multifd4", 1),
        ("dirty64", "seed", 2),
        ("dirty64", "defaults", 2),
        ("dirty64", "multifd4", 2),
    ]
    assert [r.number for r in campaign.plan()] == list(range(1, 13))
    assert campaign.baseline == "seed" and campaign.direction == "one-way"
    assert all(r.fresh and not r.reverse for r in campaign.plan())


def test_run_ids_are_unique_and_name_the_cell():
    ids = [r.run_id for r in parse(GOOD).plan()]

    assert len(set(ids)) == len(ids)
    assert ids[0] == "idle-seed-001"


def test_a_ping_pong_campaign_goes_back_every_other_run_of_a_guest():
    campaign = parse({**GOOD, "direction": "ping-pong", "repetitions": 1})

    ways = [(r.guest, r.reverse, r.fresh) for r in campaign.plan()]

    assert ways == [
        ("idle", False, False),
        ("idle", True, False),
        ("idle", False, False),
        ("dirty64", False, False),
        ("dirty64", True, False),
        ("dirty64", False, False),
    ]


def test_listed_runs_replace_the_matrix():
    campaign = parse(
        {
            **GOOD,
            "guests": {"dirty64": {"workload": {"dirty": 64}}},
            "runs": [
                {"method": "defaults", "guest": "dirty64"},
                {"method": "seed", "guest": "dirty64"},
            ],
            "baseline": "seed",
        }
    )

    assert [(r.method, r.guest) for r in campaign.plan()[:2]] == [
        ("defaults", "dirty64"),
        ("seed", "dirty64"),
    ]
    assert len(campaign.plan()) == 4


def test_extra_vars_carry_the_method_the_guest_and_the_run():
    campaign = parse(
        {
            **GOOD,
            "probes": True,
            "timeout": 90,
            "direction": "ping-pong",
            "methods": {
                "tuned": {
                    "max_bandwidth": "1000000",
                    "downtime_limit": 50,
                    "postcopy": "yes",
                    "capabilities": {"auto-converge": True},
                    "parameters": {"max-postcopy-bandwidth": 0},
                }
            },
            "guests": {"dirty64": {"workload": {"dirty": 64, "dirty_set": 128}, "cpus": 1}},
        }
    )
    first, back = campaign.plan()[:2]

    extra = campaign.extra_vars(back)

    assert extra == {
        "migration_max_bandwidth": 1000000,
        "migration_downtime_limit": 50,
        "migration_postcopy": True,
        "migration_capabilities": {"auto-converge": True},
        "migration_parameters": {"max-postcopy-bandwidth": 0},
        "vm_cpus": 1,
        "vm_append": PROFILE_APPEND + " qmigrate.dirty=64 qmigrate.dirty_set=128",
        "vm_heartbeat_regex": DIRTY_REPORT,
        "migration_profile": True,
        "migration_timeout": 90.0,
        "qmigrate_reverse": True,
    }
    assert campaign.extra_vars(first)["qmigrate_reverse"] is False


def test_a_methods_timeout_beats_the_campaigns():
    campaign = parse({**GOOD, "timeout": 60, "methods": {"a": {}, "b": {"timeout": 0.5}}})
    a, b = campaign.plan()[:2]

    assert campaign.extra_vars(a)["migration_timeout"] == 60.0
    assert campaign.extra_vars(b)["migration_timeout"] == 0.5


def test_a_dirty_guest_is_ready_at_its_workloads_first_report():
    # What the guest's qmigrate-dirty prints, after its fill, each second; and what the
    # guest's init prints from the start (the vm role's usual boot wait)
    script = (ROOT / "roles" / "guest_image" / "files" / "qmigrate-dirty").read_text()
    report = "qmigrate-dirty uptime=12.34 total_kib=65536 rate_kib_s=65536"
    campaign = parse({**GOOD, "guests": {"idle": {}, "dirty": {"workload": {"dirty": 16}}}})

    ready = campaign.guest_vars("dirty")["vm_heartbeat_regex"]

    assert 'echo "qmigrate-dirty uptime=' in script
    assert re.search(ready, report)
    assert not re.search(ready, "qmigrate-heartbeat 1 3.21")
    assert not re.search(ready, "qmigrate-dirty start rate_kib_s=16384 set_kib=65536")
    assert "vm_heartbeat_regex" not in campaign.guest_vars("idle")


def test_the_variables_a_campaign_sets_are_its_guests_methods_and_timeout():
    campaign = parse(
        {
            **GOOD,
            "timeout": 60,
            "methods": {"a": {}, "b": {"multifd_channels": 2}},
            "guests": {"idle": {"cpus": 1}, "dirty": {"workload": {"dirty": 16}}},
        }
    )

    assert campaign.variables() == {
        "vm_cpus",
        "vm_append",
        "vm_heartbeat_regex",
        "migration_profile",
        "migration_timeout",
        "migration_multifd_channels",
    }


def test_a_service_guest_carries_the_probes_workload_and_the_seed_profile():
    campaign = parse(
        {
            **GOOD,
            "probes": True,
            "guests": {
                "redis": {
                    "profile": "seed",
                    "workload": {"service": "redis", "rate": "3000", "mix": "b", "records": 500},
                },
                "idle": {},
            },
        }
    )

    assert campaign.guest_vars("redis") == {
        "qmigrate_profile": "seed",
        "probe_workload": "redis",
        "probe_workload_rate": 3000,
        "probe_workload_mix": "b",
        "probe_workload_records": 500,
        "migration_profile": True,
    }
    assert campaign.guests["redis"].workload == "redis under 3000 requests/s"
    assert "probe_workload" not in campaign.guest_vars("idle")


def test_a_guest_names_its_qemu_and_machine_type_and_a_method_tls():
    campaign = parse(
        {
            **GOOD,
            "methods": {"plain": {}, "tls": {"tls": "yes"}},
            "guests": {
                "on10": {"qemu": "backports"},
                "upgrade": {
                    "qemu": {"labsrc": "distro", "labdst": "backports"},
                    "machine": "pc-i440fx-7.2",
                },
            },
        }
    )

    assert campaign.guest_vars("on10")["qmigrate_qemu_version"] == "backports"
    upgrade = campaign.guest_vars("upgrade")
    assert upgrade["qmigrate_qemu_version"] == {"labsrc": "distro", "labdst": "backports"}
    assert upgrade["vm_machine"] == "pc-i440fx-7.2"
    assert campaign.methods["tls"].extra_vars() == {"migration_tls": True}
    assert "migration_tls" not in campaign.methods["plain"].extra_vars()


def test_the_dirty_guests_kernel_line_starts_with_the_vm_roles_own():
    defaults = yaml.safe_load((ROOT / "roles" / "vm" / "defaults" / "main.yml").read_text())

    assert defaults["vm_append"] == PROFILE_APPEND


def test_an_idle_guest_keeps_the_roles_kernel_line():
    campaign = parse(GOOD)

    assert "vm_append" not in campaign.extra_vars(campaign.plan()[0])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "red"}, "colour: unknown key (known: name, description"),
        ({"repetitions": 0}, "repetitions: 0 is out of range (1 to 1000)"),
        ({"repetitions": "five"}, "repetitions: 'five' is not an integer"),
        ({"repetitions": True}, "repetitions: True is not an integer"),
        ({"direction": "round-trip"}, "direction: 'round-trip' is not one of one-way, ping-pong"),
        ({"probes": "maybe"}, "probes: 'maybe' is not true or false"),
        ({"timeout": 0}, "timeout: 0 is not a positive number of seconds"),
        ({"timeout": float("inf")}, "timeout: inf is not a positive number of seconds"),
        ({"baseline": "fastest"}, "baseline: 'fastest' is not one of the methods"),
        ({"name": "../up"}, "name: '../up' is not a usable name"),
        ({"methods": {}}, "methods: names no method"),
        ({"methods": None}, "methods: is required: at least one method"),
        ({"guests": ["idle"]}, "guests: must be a mapping, not list"),
        ({"methods": {"a b": {}}}, "methods.a b: is not a usable name"),
        ({"methods": {"m": {"bandwidth": 1}}}, "methods.m.bandwidth: unknown key"),
        ({"methods": {"m": {"defaults": "fast"}}}, "methods.m.defaults: 'fast' is not one of"),
        ({"methods": {"m": {"max_bandwidth": -1}}}, "methods.m.max_bandwidth: -1 is out of range"),
        ({"methods": {"m": {"max_bandwidth": "4MB"}}}, "methods.m.max_bandwidth: '4MB' is not an"),
        ({"methods": {"m": {"multifd_channels": 0}}}, "methods.m.multifd_channels: 0 is out of"),
        ({"methods": {"m": {"timeout": -5}}}, "methods.m.timeout: -5 is not a positive number"),
        ({"methods": {"m": {"postcopy": "perhaps"}}}, "methods.m.postcopy: 'perhaps' is not true"),
        (
            {"methods": {"m": {"capabilities": {"multifd": "maybe"}}}},
            "methods.m.capabilities.multifd: 'maybe' is not true or false",
        ),
        ({"methods": {"m": {"capabilities": ["multifd"]}}}, "methods.m.capabilities: must be a"),
        (
            {"methods": {"m": {"parameters": {"downtime-limit": [1]}}}},
            "methods.m.parameters.downtime-limit: [1] is not a single value",
        ),
        (
            {"methods": {"m": {"defaults": "qemu", "downtime_limit": 10}}},
            "methods.m: defaults: qemu keeps QEMU's own settings, so downtime_limit",
        ),
        ({"guests": {"g": {"memory": "12x"}}}, "guests.g.memory: '12x' is not a size"),
        ({"guests": {"g": {"memory": True}}}, "guests.g.memory: True is not a size"),
        ({"guests": {"g": {"cpus": 0}}}, "guests.g.cpus: 0 is out of range (1 to 64)"),
        ({"guests": {"g": {"qemu": "10.0"}}}, "guests.g.qemu: '10.0' is not a QEMU"),
        (
            {"guests": {"g": {"qemu": {"labdst": "newest"}}}},
            "guests.g.qemu: labdst: 'newest' is not a QEMU",
        ),
        ({"guests": {"g": {"machine": "pc,x=1"}}}, "guests.g.machine: 'pc,x=1' is not a QEMU"),
        ({"methods": {"m": {"tls": "sometimes"}}}, "methods.m.tls: 'sometimes' is not true"),
        ({"guests": {"g": {"profile": "windows"}}}, "guests.g.profile: 'windows' is not one of"),
        (
            {"guests": {"g": {"workload": "busy"}}},
            "guests.g.workload: 'busy' is not idle, a dirty workload nor a service",
        ),
        ({"guests": {"g": {"workload": {"speed": 5}}}}, "guests.g.workload.speed: unknown key"),
        ({"guests": {"g": {"workload": {"dirty_set": 5}}}}, "guests.g.workload: needs dirty"),
        ({"guests": {"g": {"workload": {"rate": 5}}}}, "needs dirty (MiB/s) or service"),
        (
            {"guests": {"g": {"profile": "seed", "workload": {"service": "nginx"}}}},
            "guests.g.workload.service: 'nginx' is not one of redis, memcached",
        ),
        (
            {"guests": {"g": {"workload": {"service": "redis"}}}},
            "guests.g.workload: a service runs in the seed guest only",
        ),
        (
            {"guests": {"g": {"profile": "seed", "workload": {"service": "redis", "dirty": 8}}}},
            "guests.g.workload: is a service or a dirty workload, not both",
        ),
        (
            {"guests": {"g": {"profile": "seed", "workload": {"service": "redis", "rate": 0}}}},
            "guests.g.workload.rate: 0 is out of range",
        ),
        (
            {"guests": {"g": {"profile": "seed", "workload": {"service": "redis", "mix": "f"}}}},
            "guests.g.workload.mix: 'f' is not one of a, b, c",
        ),
        (
            {"guests": {"g": {"profile": "seed", "workload": {"service": "memcached"}}}},
            "guests.g.workload: a service under load is measured by the probes",
        ),
        ({"guests": {"g": {"workload": {"dirty": 0}}}}, "guests.g.workload.dirty: 0 is out of"),
        (
            {"guests": {"g": {"profile": "seed", "workload": {"dirty": 8}}}},
            "guests.g.workload: the dirtying workload runs in the minimal",
        ),
        ({"runs": []}, "runs: must be a non-empty list"),
        ({"runs": [{"method": "warp", "guest": "idle"}]}, "runs[0].method: 'warp' is not one of"),
        ({"runs": [{"method": "seed", "guest": "big"}]}, "runs[0].guest: 'big' is not one of"),
        ({"runs": ["seed on idle"]}, "runs[0]: must be a mapping {method, guest}"),
        (
            {"runs": [{"method": "seed", "guest": "idle"}] * 2},
            "runs[1]: seed on idle is listed twice",
        ),
        (
            {"runs": [{"method": "defaults", "guest": "idle"}], "baseline": "seed"},
            "baseline: seed does not run on idle",
        ),
        ({"runs": [{"method": "seed", "guest": "idle"}]}, "guests.dirty64: no run uses it"),
        ({"repetitions": 1000, "methods": {f"m{i}": {} for i in range(11)}}, "more than 10000"),
    ],
)
def test_each_mistake_is_named_by_its_place(change, expected):
    found = problems({**GOOD, **change})

    assert any(p.startswith(expected) or expected in p for p in found), found


def test_every_mistake_is_listed_at_once():
    found = problems(
        {
            **GOOD,
            "repetitions": -1,
            "direction": "sideways",
            "methods": {"m": {"multifd_channels": 999, "postcopy": 3}},
        }
    )

    assert len(found) == 4
    assert [p.split(":")[0] for p in found] == [
        "repetitions",
        "direction",
        "methods.m.multifd_channels",
        "methods.m.postcopy",
    ]


def test_not_a_mapping_at_all():
    assert problems(["a", "list"]) == [
        "a campaign is a mapping of name, description, repetitions, direction, probes, "
        "timeout, baseline, methods, guests, runs"
    ]


def test_a_file_that_is_not_yaml_or_missing_says_so(tmp_path: Path):
    broken = tmp_path / "broken.yml"
    broken.write_text("methods: [unclosed\n")

    with pytest.raises(CampaignError, match="is not YAML"):
        load(broken)
    with pytest.raises(CampaignError, match="cannot be read"):
        load(tmp_path / "missing.yml")


def test_the_name_defaults_to_the_files(tmp_path: Path):
    path = tmp_path / "quick.yml"
    path.write_text(
        textwrap.dedent(
            """\
            methods: {defaults: {}}
            guests: {idle: {}}
            """
        )
    )

    campaign = load(path)

    assert campaign.name == "quick" and campaign.repetitions == 1
    assert [r.run_id for r in campaign.plan()] == ["idle-defaults-001"]


def test_the_error_message_lists_every_problem():
    with pytest.raises(CampaignError) as refused:
        parse({**GOOD, "repetitions": 0, "probes": "x"}, "campaigns/c.yml")

    assert str(refused.value).startswith("campaigns/c.yml: 2 problem(s):\n  - repetitions")


@pytest.mark.parametrize(
    "shipped", sorted((ROOT / "campaigns").glob("*.yml")), ids=lambda p: p.stem
)
def test_every_run_of_a_shipped_campaign_passes_the_check_of_every_input(shipped):
    """What a campaign gives migrate.yml is what a user could give it: the project's own
    check of every input (action_plugins/qmigrate_inputs.py) finds nothing wrong."""
    from tests.unit.plugins.test_inputs import check

    campaign = load(shipped)

    for run in campaign.plan():
        extra = {**campaign.extra_vars(run), "migration_run_id": run.run_id}
        assert check(extra) == {}, (run.run_id, extra)


def test_the_check_of_every_input_refuses_what_a_campaign_must_not_give():
    """The test above can fail: a method the roles do not know is caught by that check."""
    from tests.unit.plugins.test_inputs import check

    assert "migration_defaults" in check({"migration_defaults": "seed"})
