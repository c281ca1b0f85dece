"""src/qmigrate: the Python API, the command, the profile and its report."""
