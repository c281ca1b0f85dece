"""module_utils/: the QMP and HMP clients and the migration commands over either."""
