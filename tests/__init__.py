"""qmigrate's tests: unit/ needs neither the lab nor QEMU; integration/ builds the lab."""

from pathlib import Path

# The checkout under test.
ROOT = Path(__file__).resolve().parents[1]
