"""Versions of the packages the engine looks at: getCapabilities' `packages2`.

One `dpkg-query` (Debian) or `rpm -q` (RPM distributions) run as an async subprocess
with a timeout; the answer is cached by `PackageVersions` since packages do not change
under a running daemon (an upgrade restarts it).  `kernel` comes from uname and `vdsm`
is this daemon's own version.

Debian versions are mapped to upstream's {version, release} pair: the epoch and the
`+dfsg`-style repack suffix are dropped and the Debian revision becomes the release,
so `1:7.2+dfsg-7+deb12u18` reads {"version": "7.2", "release": "7+deb12u18"}.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from typing import Any

import vdsm
from vdsm.host.osinfo import kernel_version

log = logging.getLogger("vdsm.host.packages")

# Reported name -> candidate package names, first installed one wins.
DEB_PACKAGES: dict[str, tuple[str, ...]] = {
    "glusterfs-cli": ("glusterfs-cli",),
    "librbd1": ("librbd1",),
    "libvirt": ("libvirt-daemon", "libvirt0"),
    "mom": ("mom",),
    "openvswitch": ("openvswitch-switch",),
    "nmstate": ("nmstate",),
    "qemu-img": ("qemu-utils", "qemu-img"),
    "qemu-kvm": ("qemu-system-x86", "qemu-kvm", "qemu-system-arm", "qemu-system-ppc"),
    "spice-server": ("libspice-server1",),
    "lvm2": ("lvm2",),
}
RPM_PACKAGES: dict[str, tuple[str, ...]] = {
    "glusterfs-cli": ("glusterfs-cli",),
    "librbd1": ("librbd1",),
    "libvirt": ("libvirt", "libvirt-daemon-kvm"),
    "mom": ("mom",),
    "ovirt-hosted-engine-ha": ("ovirt-hosted-engine-ha",),
    "openvswitch": ("openvswitch", "ovirt-openvswitch"),
    "nmstate": ("nmstate",),
    "qemu-img": ("qemu-img", "qemu-img-rhev", "qemu-img-ev"),
    "qemu-kvm": ("qemu-kvm", "qemu-kvm-rhev", "qemu-kvm-ev"),
    "spice-server": ("spice-server",),
    "lvm2": ("lvm2", "lvm2-libs"),
}

_NUMERIC_PREFIX = re.compile(r"^\d+(\.\d+)*")


def split_deb_version(text: str) -> dict[str, str]:
    text = text.split(":", 1)[1] if ":" in text else text  # epoch
    upstream, _, revision = text.rpartition("-")
    if not upstream:  # native package: no revision
        upstream, revision = revision, ""
    match = _NUMERIC_PREFIX.match(upstream)
    return {"version": match.group(0) if match else upstream, "release": revision}


def parse_dpkg_query(output: str) -> dict[str, dict[str, str]]:
    """`name<TAB>version<TAB>status` lines -> installed packages by name."""
    installed = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        name, version, status = fields[0].split(":", 1)[0], fields[1], fields[2]
        if version and status.startswith("i"):  # "ii ", "iU "...: installed
            installed[name] = split_deb_version(version)
    return installed


def parse_rpm_query(output: str) -> dict[str, dict[str, str]]:
    installed = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1]:
            installed[fields[0]] = {"version": fields[1], "release": fields[2]}
    return installed


def pick(
    installed: dict[str, dict[str, str]], table: dict[str, tuple[str, ...]]
) -> dict[str, dict[str, str]]:
    picked = {}
    for reported, candidates in table.items():
        for name in candidates:
            if name in installed:
                picked[reported] = installed[name]
                break
    return picked


async def _run(argv: list[str], timeout: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    # Both tools exit non-zero when some names are unknown; the rest is still valid.
    return out.decode("utf-8", "replace")


async def query_packages(timeout: float = 10.0) -> dict[str, dict[str, str]]:
    if shutil.which("dpkg-query"):
        names = sorted({n for names in DEB_PACKAGES.values() for n in names})
        fmt = "${Package}\t${Version}\t${db:Status-Abbrev}\n"
        output = await _run(["dpkg-query", "-W", "-f", fmt, *names], timeout)
        return pick(parse_dpkg_query(output), DEB_PACKAGES)
    if shutil.which("rpm"):
        names = sorted({n for names in RPM_PACKAGES.values() for n in names})
        fmt = "%{NAME}\t%{VERSION}\t%{RELEASE}\n"
        output = await _run(["rpm", "-q", "--qf", fmt, *names], timeout)
        return pick(parse_rpm_query(output), RPM_PACKAGES)
    log.warning("neither dpkg-query nor rpm found: no package versions")
    return {}


class PackageVersions:
    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._cached: dict[str, dict[str, str]] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._cached is None:
                try:
                    found = await query_packages(self._timeout)
                except (OSError, TimeoutError) as e:
                    # Not cached: the next call tries again.
                    log.warning("cannot query package versions: %s", e)
                    found = None
                else:
                    self._cached = found
            else:
                found = self._cached
        packages: dict[str, Any] = {"kernel": kernel_version()}
        packages.update(found or {})
        packages["vdsm"] = {"version": vdsm.__version__, "release": ""}
        return {name: dict(info) for name, info in packages.items()}
