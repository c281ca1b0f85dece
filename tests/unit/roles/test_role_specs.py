"""Every role's public variables are in its argument specs, which the check of every input
(action_plugins/qmigrate_inputs.py) reads for their types: a default without a spec would
go unchecked, and be reported as an unknown extra var."""

from __future__ import annotations

import pytest
import yaml

from tests import ROOT

ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_default_has_a_typed_spec(role):
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = {}
    for entry in specs.values():
        options.update(entry.get("options") or {})

    assert sorted(set(defaults or {}) - set(options)) == []
    assert sorted(name for name, option in options.items() if "type" not in option) == []
