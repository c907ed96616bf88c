"""Operating system facts for getCapabilities: release, kernel, security settings.

All cheap file reads; `boot_uuid` is the only one that walks a directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from vdsm.system.procfs import (
    mount_containing,
    parse_key_values,
    parse_mountinfo,
    read_text,
)

log = logging.getLogger("vdsm.host.osinfo")

ETC = Path("/etc")


class OSName:
    UNKNOWN = "unknown"
    OVIRT = "oVirt Node"
    RHEL = "RHEL"
    FEDORA = "Fedora"
    RHEVH = "RHEV Hypervisor"
    DEBIAN = "Debian"


def release_name(etc: Path = ETC) -> str:
    """The distribution family, judged by its release files like upstream does."""
    if (etc / "rhev-hypervisor-release").exists():
        return OSName.RHEVH
    if any(etc.glob("ovirt-node-*-release")):
        return OSName.OVIRT
    if (etc / "fedora-release").exists():
        return OSName.FEDORA
    if (etc / "redhat-release").exists():
        return OSName.RHEL
    if (etc / "debian_version").exists():
        return OSName.DEBIAN
    return OSName.UNKNOWN


def operating_system(etc: Path = ETC) -> dict[str, str]:
    """getCapabilities' `operatingSystem`: {release, version, name, pretty_name}."""
    name = release_name(etc)
    os_release = parse_key_values(read_text(etc / "os-release", ""))
    version = release = ""
    if name in (OSName.RHEVH, OSName.OVIRT):
        node = parse_key_values(read_text(etc / "default" / "version", ""))
        version, release = node.get("VERSION", ""), node.get("RELEASE", "")
    elif name == OSName.DEBIAN:
        lines = read_text(etc / "debian_version", "").splitlines()
        version = lines[0].strip() if lines else ""
    else:
        # Upstream takes version and release of the redhat-release package; the
        # os-release version is the same number without querying rpm.
        version = os_release.get("VERSION_ID", "")
    return {
        "release": release,
        "version": version,
        "name": name,
        "pretty_name": os_release.get("PRETTY_NAME", ""),
    }


def kernel_version(release: str | None = None) -> dict[str, str]:
    """packages2['kernel']: uname release split at the first dash."""
    release = release or os.uname().release
    version, sep, rest = release.partition("-")
    if not sep:
        log.warning("kernel release %r has no dash", release)
        return {"version": "0", "release": "0"}
    return {"version": version, "release": rest}


def realtime_kernel() -> bool:
    return "RT" in os.uname().version


def kernel_args(path: Path = Path("/proc/cmdline")) -> str:
    lines = read_text(path, "").splitlines()
    return lines[0].strip() if lines else ""


def nested_virtualization(sys_module: Path = Path("/sys/module")) -> bool:
    for module in ("kvm_intel", "kvm_amd", "kvm"):
        value = read_text(sys_module / module / "parameters" / "nested", "").strip()
        if value in ("Y", "1"):
            return True
    return False


SELINUX_MOUNTS = (Path("/sys/fs/selinux"), Path("/selinux"))
CPU_VULNERABILITIES = Path("/sys/devices/system/cpu/vulnerabilities")


def selinux_mode(mounts: tuple[Path, ...] = SELINUX_MOUNTS) -> dict[str, str]:
    """{"mode": "1"} enforcing, "0" permissive, "-1" disabled (no selinuxfs)."""
    for mount in mounts:
        text = read_text(mount / "enforce", "").strip()
        if text.lstrip("-").isdigit():
            return {"mode": str(int(text))}
    return {"mode": "-1"}


def fips_enabled(path: Path = Path("/proc/sys/crypto/fips_enabled")) -> bool:
    return read_text(path, "0").strip() == "1"


KDUMP_UNKNOWN, KDUMP_DISABLED, KDUMP_ENABLED = -1, 0, 1


def kdump_status(
    crash_loaded: Path = Path("/sys/kernel/kexec_crash_loaded"),
    kdump_conf: Path = Path("/etc/kdump.conf"),
) -> int:
    """1 only when a crash kernel is loaded and kdump fences through fence_kdump."""
    text = read_text(crash_loaded, "").strip()
    if not text.isdigit():
        return KDUMP_UNKNOWN
    if int(text) != KDUMP_ENABLED:
        return int(text)
    try:
        conf = kdump_conf.read_text()
    except OSError:
        return KDUMP_UNKNOWN
    if any(line.startswith("fence_kdump_nodes") for line in conf.splitlines()):
        return KDUMP_ENABLED
    return KDUMP_DISABLED


def cpu_vulnerabilities(path: Path = CPU_VULNERABILITIES) -> dict[str, str]:
    """getCapabilities' `kernelFeatures`: {"SPECTRE_V2": "Mitigation: ...", ...}."""
    features: dict[str, str] = {}
    try:
        entries = sorted(path.iterdir())
    except OSError:
        return features
    for entry in entries:
        if entry.is_file():
            features[entry.name.upper()] = read_text(entry, "").strip()
    return features


def rng_sources(dev: Path = Path("/dev")) -> list[str]:
    """Entropy sources a VM's virtio-rng can use; urandom is left out like upstream."""
    return [name for name in ("random", "hwrng") if (dev / name).exists()]


def hostdev_passthrough(
    iommu_groups: Path = Path("/sys/kernel/iommu_groups"), iommu: Path = Path("/sys/class/iommu")
) -> bool:
    try:
        return any(iommu_groups.iterdir()) and any(iommu.iterdir())
    except OSError:
        return False


def vnc_encrypted(qemu_conf: Path = Path("/etc/libvirt/qemu.conf")) -> bool:
    values = parse_key_values(read_text(qemu_conf, ""), unquote=False)
    return values.get("vnc_tls", "0") == "1"


def boot_uuid(
    mountinfo: Path = Path("/proc/self/mountinfo"),
    by_uuid: Path = Path("/dev/disk/by-uuid"),
    udev_data: Path = Path("/run/udev/data"),
    target: str = "/boot",
) -> str | None:
    """UUID of the file system holding /boot (which may be the root file system).

    Found through udev's /dev/disk/by-uuid links, or udev's database; None when neither
    knows the device.
    """
    mount = mount_containing(parse_mountinfo(read_text(mountinfo)), target)
    if mount is None:
        return None
    device = (mount.major, mount.minor)
    if mount.source.startswith("/dev/"):
        try:
            rdev = os.stat(mount.source).st_rdev
            device = (os.major(rdev), os.minor(rdev))
        except OSError:
            pass
    try:
        links = list(by_uuid.iterdir())
    except OSError:
        links = []
    for link in links:
        try:
            rdev = os.stat(link).st_rdev
        except OSError:
            continue
        if (os.major(rdev), os.minor(rdev)) == device:
            return link.name
    data = read_text(udev_data / f"b{device[0]}:{device[1]}", "")
    for line in data.splitlines():
        if line.startswith("E:ID_FS_UUID="):
            return line.split("=", 1)[1].strip()
    return None


def iscsi_initiator_name(path: Path = Path("/etc/iscsi/initiatorname.iscsi")) -> str:
    values = parse_key_values(read_text(path, ""), unquote=False)
    return values.get("InitiatorName", "")


def hba_inventory(
    initiator_file: Path = Path("/etc/iscsi/initiatorname.iscsi"),
    fc_hosts: Path = Path("/sys/class/fc_host"),
) -> dict[str, list[dict[str, Any]]]:
    """{"iSCSI": [{"InitiatorName": ...}] (empty without iscsi), "FC": [{wwpn, wwnn, model}]}."""
    iscsi = []
    name = iscsi_initiator_name(initiator_file)
    if name:
        iscsi.append({"InitiatorName": name})
    fc = []
    try:
        hosts = sorted(fc_hosts.glob("host*"))
    except OSError:
        hosts = []
    for host in hosts:
        # Upstream strips every leading "0" and "x" character, leading zeros included.
        wwpn = read_text(host / "port_name", "").strip().lstrip("0x")
        wwnn = read_text(host / "node_name", "").strip().lstrip("0x")
        scsi_host = host / "device" / "scsi_host" / host.name
        model_name = model_desc = "Unknown"
        for name_key, desc_key in (
            ("modelname", "modeldesc"),
            ("model", "model_description"),
            ("model_name", "model_desc"),
        ):
            name_text = read_text(scsi_host / name_key, "").strip()
            desc_text = read_text(scsi_host / desc_key, "").strip()
            if name_text and desc_text:
                model_name, model_desc = name_text, desc_text
        fc.append({"wwpn": wwpn, "wwnn": wwnn, "model": f"{model_name} - {model_desc}"})
    return {"iSCSI": iscsi, "FC": fc}
