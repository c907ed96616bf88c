"""Thin async adapters, one per external system (libvirt, sanlock, lvm, netlink...)."""
