"""README.md and docs/."""
