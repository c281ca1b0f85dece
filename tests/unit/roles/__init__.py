"""roles/: argument specs, the vm role's profiles, the guest image's scripts."""
