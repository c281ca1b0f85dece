"""library/: the Ansible modules."""
