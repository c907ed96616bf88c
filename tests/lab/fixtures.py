"""Lab fixtures (real libvirtd, sanlock, LVM, netns, vdsmd): being written."""
