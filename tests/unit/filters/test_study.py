"""How the study numbers its VM pairs (qmigrate_vm_count): names, TAP devices, MACs,
addresses, migration ports and SSH forwards that never collide, and bad counts refused."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from filter_plugins.study import (
    qmigrate_pending,
    qmigrate_plan_hosts,
    qmigrate_standing,
    qmigrate_vm_taps,
    qmigrate_vms,
)


def test_one_vm_is_the_seeds():
    (vm,) = qmigrate_vms(1)

    assert vm == {
        "name": "vm0",
        "destination": "vm0",
        "address": "10.10.1.100/24",
        "mac": "52:55:00:d1:55:01",
        "tap": "tap0",
        "colocated_tap": "tap1",
        "port": 4444,
        "ssh_forward": "127.0.0.1:10021",
    }
    assert qmigrate_vm_taps(1) == ["tap0", "tap1"]


def test_four_vms_share_nothing():
    vms = qmigrate_vms("4")

    assert [v["name"] for v in vms] == ["vm0", "vm1", "vm2", "vm3"]
    assert [v["address"] for v in vms] == [f"10.10.1.{100 + i}/24" for i in range(4)]
    assert [v["mac"] for v in vms] == [f"52:55:00:d1:55:0{1 + i}" for i in range(4)]
    assert [v["port"] for v in vms] == [4444, 4445, 4446, 4447]
    taps = [t for v in vms for t in (v["tap"], v["colocated_tap"])]
    assert taps == [f"tap{i}" for i in range(8)] == qmigrate_vm_taps(4)
    # A same-host destination forwards the next port up (the vm role's offset of 1).
    forwards = [int(v["ssh_forward"].rsplit(":", 1)[1]) for v in vms]
    assert sorted(forwards + [p + 1 for p in forwards]) == list(range(10021, 10029))


def test_same_host_destinations_have_their_own_names():
    vms = qmigrate_vms(2, colocated=True)

    assert [v["destination"] for v in vms] == ["vm0-incoming", "vm1-incoming"]
    assert [v["name"] for v in vms] == ["vm0", "vm1"]


def test_numbering_follows_the_first_vms_settings():
    vms = qmigrate_vms(3, "guest7", "192.0.2.10/28", "02:00:00:00:00:fd", 5000, "127.0.0.1:2222")

    assert [v["name"] for v in vms] == ["guest7", "guest8", "guest9"]
    assert [v["address"] for v in vms] == ["192.0.2.10/28", "192.0.2.11/28", "192.0.2.12/28"]
    assert vms[2]["mac"] == "02:00:00:00:00:ff"
    assert [v["port"] for v in vms] == [5000, 5001, 5002]
    assert vms[2]["ssh_forward"] == "127.0.0.1:2226"
    assert [v["name"] for v in qmigrate_vms(2, "study")] == ["study", "study1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0,), "qmigrate_vm_count must be 1 to 32, got 0"),
        ((33,), "qmigrate_vm_count must be 1 to 32, got 33"),
        (
            (
                2,
                "vm0",
                "10.10.1.100/24",
                "52:55:00:d1:55:01",
                4444,
                "127.0.0.1:10021",
                False,
                "seed",
            ),
            "qmigrate_vm_count 2: more than one VM needs the minimal profile",
        ),
        (("two",), "qmigrate_vm_count: 'two' is not a number"),
        ((3, "vm0", "10.10.1.13/28"), "3 VMs from 10.10.1.13/28 run out of 10.10.1.0/28"),
        ((2, "vm0", "10.10.1.100"), "2 VMs from 10.10.1.100 run out of 10.10.1.100/32"),
        ((2, "vm0", "not-an-address"), "is not an address/prefix"),
        ((2, "vm0", "10.10.1.100/24", "52:55:00:d1:55:ff"), "run past its last octet"),
        ((2, "vm0", "10.10.1.100/24", "52:55:00:d1:55"), "is not a MAC address"),
        ((2, "vm0", "10.10.1.100/24", "52:55:00:d1:55:01", 4444, "10021"), "is not address:port"),
    ],
)
def test_bad_input_is_refused_naming_it(args, message):
    with pytest.raises(AnsibleFilterError, match=message.replace(".", r"\.")):
        qmigrate_vms(*args)


def test_pending_pairs_are_those_whose_vm_here_does_not_run_as_asked():
    pairs = qmigrate_vms(3)
    checked = {
        "vm0": {"as_asked": True},
        "vm1": {"as_asked": False, "why": "its command line differs"},
        "vm2": {"as_asked": True},
    }

    at_source = qmigrate_pending(pairs, checked, "source")
    at_destination = qmigrate_pending(pairs, {"vm0": {"as_asked": True}}, "destination")

    assert [p["name"] for p in at_source] == ["vm1"]
    assert [p["name"] for p in at_destination] == ["vm1", "vm2"]  # not checked: start them


def test_pending_refuses_an_unknown_side():
    with pytest.raises(AnsibleFilterError, match="is not source or destination"):
        qmigrate_pending([], {}, "client")


def test_the_plan_puts_each_hypervisor_in_its_groups_with_its_vms():
    vms = qmigrate_vms(1)
    plan = {"source": "labdst", "destination": "labsrc", "colocated": False, "vms": vms}

    localhost, src, dst = qmigrate_plan_hosts(plan, ["labsrc", "labdst"])

    assert localhost == {"name": "localhost", "groups": ["qmigrate_inputs_checked"]}
    assert src["name"] == "labsrc" and src["groups"] == ["migration_destination"]
    assert "pair" not in src
    assert dst["groups"] == ["migration_source", "migration_pairs", "qmigrate_directed"]
    assert dst["pair"] == vms[0]
    assert src["vms"] == dst["vms"] == vms and src["colocated"] is False


def test_further_vms_leave_the_direction_to_their_stand_ins():
    vms = qmigrate_vms(3)
    plan = {"source": "labsrc", "destination": "labsrc", "colocated": True, "vms": vms}

    _, src, dst = qmigrate_plan_hosts(plan, ["labsrc", "labdst"])

    assert src["groups"] == ["migration_source", "migration_pairs", "migration_destination"]
    assert dst["groups"] == [] and dst["colocated"] is True


def test_without_a_plan_only_the_check_is_noted():
    assert qmigrate_plan_hosts(None, ["labsrc"]) == [
        {"name": "localhost", "groups": ["qmigrate_inputs_checked"]}
    ]


def groups_of(items):
    return {item["name"]: item["groups"] for item in items}


def test_standing_groups_running_as_asked_answering_and_prepared():
    checked = {
        "labsrc": {"vm0": {"as_asked": True, "pid": 10}},
        "labdst": {"vm0": {"as_asked": False, "pid": 11, "why": "postmigrate"}},
    }

    groups = groups_of(qmigrate_standing(checked))

    assert groups["labsrc"] == [
        "qmigrate_host_answers",
        "qmigrate_vm_running",
        "qmigrate_vm_as_asked",
        "qmigrate_prepared",
    ]
    assert groups["labdst"] == ["qmigrate_host_answers", "qmigrate_vm_running", "qmigrate_prepared"]


def test_standing_prepares_again_when_asked_to_or_when_a_host_did_not_answer():
    running = {"vm0": {"as_asked": True, "pid": 10}}
    gone = {"vm0": {"as_asked": False, "pid": None}}

    assert (
        "qmigrate_prepared"
        not in groups_of(qmigrate_standing({"labsrc": running, "labdst": gone}, "always"))["labsrc"]
    )
    unasked = groups_of(qmigrate_standing({"labsrc": running, "labdst": None}))
    assert unasked == {
        "labsrc": ["qmigrate_host_answers", "qmigrate_vm_running", "qmigrate_vm_as_asked"],
        "labdst": [],
    }
    assert groups_of(qmigrate_standing({"labsrc": gone, "labdst": gone})) == {
        "labsrc": ["qmigrate_host_answers"],
        "labdst": ["qmigrate_host_answers"],
    }


def test_standing_skips_preparing_when_told_to_while_every_host_answers():
    gone = {"vm0": {"as_asked": False, "pid": None}}  # answered: the VMs were stopped

    stopped = groups_of(qmigrate_standing({"labsrc": gone, "labdst": gone}, "skip"))
    unbuilt = groups_of(qmigrate_standing({"labsrc": gone, "labdst": None}, "skip"))

    assert stopped == {
        "labsrc": ["qmigrate_host_answers", "qmigrate_prepared"],
        "labdst": ["qmigrate_host_answers", "qmigrate_prepared"],
    }
    # A host that did not answer (its lab namespace is not there): prepared as ever
    assert unbuilt == {"labsrc": ["qmigrate_host_answers"], "labdst": []}
