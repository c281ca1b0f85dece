"""Unit tests, laid out like the code they test."""

from pathlib import Path

# Files the tests read: QEMU's output, the seed's script, a profiled run's record.
DATA = Path(__file__).parent / "data"
