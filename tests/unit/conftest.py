"""Shared setup for the unit tests."""

import sys
from pathlib import Path

# module_utils are imported as ansible.module_utils.<name> only inside AnsiballZ payloads;
# the tests import them directly.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "module_utils"))
