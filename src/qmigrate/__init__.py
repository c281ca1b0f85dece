"""qmigrate: live-migration studies of QEMU/KVM virtual machines, driven by Ansible."""

__version__ = "0.1.0"
