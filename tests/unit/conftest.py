"""Fixtures the unit tests of several directories share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.unit.fakes import FakeHMP


@pytest.fixture
def fake_hmp(tmp_path: Path):
    """Starts a FakeHMP answering REPLIES on monitor.sock in tmp_path; stopped after."""
    servers: list[FakeHMP] = []

    def start(replies: Mapping[str, str | Sequence[str]]) -> FakeHMP:
        servers.append(FakeHMP(tmp_path / "monitor.sock", replies))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
