"""filter_plugins/."""
