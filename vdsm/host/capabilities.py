"""HostInfo: Host.getCapabilities, Host.getStats and Host.getHardwareInfo.

Field names and wire types are upstream's (contract §2.2, §6.3): most numbers are
strings in capabilities (cpuCores "2", memSize MiB "15923", kvmEnabled "true") while
getStats mixes strings (cpu percentages) and integers (memory in MiB).

Where each part comes from:
- local facts (CPU, NUMA, memory, OS, hooks, storage initiators, host UUID): files in
  /proc, /sys and /etc, read in one worker thread per call;
- libvirt (emulated machines, CPU models and features, TSC, versions for the cluster
  levels): the `Libvirt` adapter.  When libvirt cannot be reached those fields are
  empty or left out with a warning, and the engine then sees the host as not
  operational, which is right;
- packages2: one dpkg-query/rpm run, cached;
- network keys and lastClientIface: the cached `NetworkReport`.

getStats rates come from the `SampleWindow` that `sample_forever` fills; before two
samples exist they are averages since boot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vdsm
from vdsm.hooks.inventory import installed_hooks
from vdsm.host import cpu, memory, numa, osinfo, sampling, virtcaps
from vdsm.host.hardware import read_hardware_info
from vdsm.host.hostid import host_uuid
from vdsm.host.packages import PackageVersions
from vdsm.network.report import NetworkReport, link_statistics
from vdsm.system.blocking import BlockingCallTimeout
from vdsm.system.libvirt import Libvirt, LibvirtCallError, LibvirtUnavailable
from vdsm.system.procfs import parse_loadavg, read_text

log = logging.getLogger("vdsm.host.capabilities")

VERSION_NAME = "Snow Man"
DOMAIN_VERSIONS = [0, 2, 3, 4, 5]
# Block sizes each storage type supports; 0 means "detect" (upstream, sanlock >= 3.7.3).
SUPPORTED_BLOCK_SIZE = {
    "FCP": [512],
    "GLUSTERFS": [0, 512, 4096],
    "ISCSI": [512],
    "LOCALFS": [0, 512, 4096],
    "NFS": [512],
    "POSIXFS": [512],
}
# Static feature flags upstream's caps report; override through HostInfo(features=).
# Feature flags the engine reads from getCapabilities, with upstream's names.  Each is
# reported as supported only once this daemon really has the feature: the engine acts on
# them (offers live snapshots, incremental backup, ...).  The issue that builds a feature
# turns its flag on here.
FEATURES: dict[str, Any] = {
    "liveSnapshot": "false",  # VM snapshots
    "liveMerge": "false",  # VM.merge
    "additionalFeatures": [],  # upstream: ["libgfapi_supported"] (gluster)
    "hostedEngineDeployed": False,
    "deferred_preallocation": False,  # Volume.create on block domains
    "backupEnabled": False,  # VM.start_backup
    "coldBackupEnabled": False,
    "clearBitmapsEnabled": False,  # SDM.clear_bitmaps
    "cd_change_pdiv": False,  # VM.changeCD with a PDIV drive spec
    "refresh_disk_supported": False,  # VM.refresh_disk
    "replicate_extend": False,  # VM.diskReplicateStart needExtend
    "measure_subchain": False,  # Volume.measure baseID
    "measure_active": False,
    "mailbox_events": False,  # SPM mailbox
    "qemu_image_info_bitmaps": False,  # Volume.getQemuImageInfo bitmaps
    "ovnConfigured": False,
}
NO_HOSTED_ENGINE = {
    "configured": False,
    "active": False,
    "score": 0,
    "globalMaintenance": False,
    "localMaintenance": False,
}
_EMPTY_NETWORK = {
    "networks": {},
    "bridges": {},
    "nics": {},
    "bondings": {},
    "vlans": {},
    "nameservers": [],
    "supportsIPv6": False,
}
_LIBVIRT_ERRORS = (LibvirtUnavailable, LibvirtCallError, BlockingCallTimeout)


@dataclass(frozen=True)
class VmCounts:
    total: int = 0
    active: int = 0  # Up
    incoming: int = 0  # Migration Destination
    outgoing: int = 0  # Migration Source


class HostInfo:
    def __init__(
        self,
        *,
        libvirt: Libvirt,
        hooks_dir: Path,
        host_id_file: Path,
        network: NetworkReport,
        run_dir: Path = Path("/run/vdsm"),
        uptime: Callable[[], float] | None = None,
        vm_counts: Callable[[], VmCounts] | None = None,
        storage_domains: Callable[[], Mapping[str, Any]] | None = None,
        multipath_health: Callable[[], Mapping[str, Any]] | None = None,
        net_config_dirty: Callable[[], bool] | None = None,
        features: Mapping[str, Any] | None = None,
        package_timeout: float = 10.0,
        dmi_dir: Path = Path("/sys/class/dmi/id"),
    ) -> None:
        self.libvirt = libvirt
        self._hooks_dir = hooks_dir
        self._host_id_file = host_id_file
        self._network = network
        self._run_dir = run_dir
        started = time.monotonic()
        self._uptime = uptime or (lambda: time.monotonic() - started)
        self._vm_counts = vm_counts or VmCounts
        self._storage_domains = storage_domains
        self._multipath_health = multipath_health
        self._net_config_dirty = net_config_dirty or (lambda: False)
        self._features = dict(FEATURES if features is None else features)
        self._packages = PackageVersions(package_timeout)
        self._dmi_dir = dmi_dir
        self._arch = os.uname().machine
        self._uuid: str | None = None
        self._boot_uuid_missing_logged = False
        self._window = sampling.SampleWindow()
        self._sampling = False
        self._ksmd_pid: int | None = None
        self._ksmd_searched = False

    # -- getHardwareInfo ---------------------------------------------------------------

    async def hardware_info(self) -> dict[str, str]:
        return await asyncio.to_thread(read_hardware_info, self._dmi_dir)

    # -- getCapabilities ---------------------------------------------------------------

    async def host_uuid(self) -> str:
        if self._uuid is None:
            self._uuid = await asyncio.to_thread(host_uuid, self._host_id_file, self._dmi_dir)
        return self._uuid

    async def capabilities(self, client_address: str = "") -> dict[str, Any]:
        """The getCapabilities `info` member.

        `client_address` is our end of the caller's connection ("host" or
        "host:port"); the device owning it is reported as lastClientIface.
        """
        uuid = await self.host_uuid()
        local, virt, packages, net, iface = await asyncio.gather(
            asyncio.to_thread(self._local_caps),
            self._virt_caps(),
            self._packages.get(),
            self._network_caps(),
            self._client_iface(client_address),
        )
        caps: dict[str, Any] = {}
        caps.update(local)
        cpuinfo_flags = caps.pop("_cpuinfo_flags")
        caps["cpuFlags"] = virtcaps.cpu_flags(
            cpuinfo_flags, virt.pop("_features", []), virt.pop("_models", [])
        )
        levels = virt.pop("_levels", None)
        caps.update(virt)
        caps["uuid"] = uuid
        caps["packages2"] = packages
        if levels is None:
            levels = virtcaps.cluster_levels(
                virtcaps.parse_version(packages.get("libvirt", {}).get("version", "")),
                virtcaps.parse_version(packages.get("qemu-kvm", {}).get("version", "")),
            )
        caps.update(
            {
                "version_name": VERSION_NAME,
                "software_version": vdsm.COMPAT_VERSION,
                "software_revision": vdsm.__version__,
                "supportedENGINEs": list(virtcaps.SUPPORTED_ENGINES),
                "clusterLevels": levels,
                "domain_versions": list(DOMAIN_VERSIONS),
                "supported_block_size": {k: list(v) for k, v in SUPPORTED_BLOCK_SIZE.items()},
            }
        )
        for key, value in self._features.items():
            caps[key] = list(value) if isinstance(value, list) else value
        caps.update(net)
        caps["netConfigDirty"] = str(bool(self._net_config_dirty()))
        caps["lastClientIface"] = iface
        return caps

    def _local_caps(self) -> dict[str, Any]:
        nodes = numa.read_nodes()
        topology = cpu.read_topology(cpu_to_node=numa.cpu_to_node(nodes))
        info = cpu.read_cpuinfo()
        meminfo = memory.read_meminfo()
        caps: dict[str, Any] = {
            "kvmEnabled": str(os.path.exists("/dev/kvm")).lower(),
            "cpuCores": str(topology.cores),
            "cpuThreads": str(topology.threads),
            "cpuSockets": str(topology.sockets),
            "onlineCpus": ",".join(str(c) for c in topology.online),
            "cpuTopology": [
                {
                    "cpu_id": c.cpu_id,
                    "numa_cell_id": c.numa_cell_id,
                    "socket_id": c.socket_id,
                    "die_id": c.die_id,
                    "core_id": c.core_id,
                }
                for c in topology.cpus
            ],
            "cpuSpeed": info.speed,
            "cpuModel": info.model,
            "_cpuinfo_flags": info.flags,
            "vdsmToCpusAffinity": cpu.affinity(),
            "operatingSystem": osinfo.operating_system(),
            "realtimeKernel": osinfo.realtime_kernel(),
            "kernelArgs": osinfo.kernel_args(),
            "nestedVirtualization": osinfo.nested_virtualization(),
            "ISCSIInitiatorName": osinfo.iscsi_initiator_name(),
            "HBAInventory": osinfo.hba_inventory(),
            "vmTypes": ["kvm"],
            "memSize": str(meminfo["MemTotal"] // 1024),
            "reservedMem": str(memory.RESERVED_MEM_MIB),
            "guestOverhead": str(memory.GUEST_OVERHEAD_MIB),
            "rngSources": osinfo.rng_sources(),
            "numaNodes": numa.caps_numa_nodes(nodes),
            "numaNodeDistance": numa.caps_distances(nodes),
            "autoNumaBalancing": numa.autonuma_status(),
            "selinux": osinfo.selinux_mode(),
            "kdumpStatus": osinfo.kdump_status(),
            "hostdevPassthrough": str(osinfo.hostdev_passthrough()).lower(),
            "hugepages": memory.hugepage_sizes(),
            "kernelFeatures": osinfo.cpu_vulnerabilities(),
            "vncEncrypted": osinfo.vnc_encrypted(),
            "fipsEnabled": osinfo.fips_enabled(),
        }
        try:
            caps["hooks"] = installed_hooks(self._hooks_dir)
        except Exception:
            log.warning("not reporting hooks", exc_info=True)
        try:
            boot = osinfo.boot_uuid()
        except Exception:
            log.warning("cannot find the boot file system", exc_info=True)
            boot = None
        if boot:
            caps["boot_uuid"] = boot
        elif not self._boot_uuid_missing_logged:
            # Once: the engine asks for capabilities often, and the answer will not change.
            self._boot_uuid_missing_logged = True
            log.info("boot_uuid not reported: the /boot file system has no known UUID")
        return caps

    async def _virt_caps(self) -> dict[str, Any]:
        # Each query stands alone: a driver without domain capabilities (the test
        # driver) still yields machines and versions.
        virt: dict[str, Any] = {"emulatedMachines": []}
        try:
            caps_xml = await self.libvirt.capabilities_xml()
        except _LIBVIRT_ERRORS as e:
            log.warning("capabilities without libvirt data: %s", e)
            return virt
        virt["emulatedMachines"] = virtcaps.emulated_machines(caps_xml, self._arch)
        virt["tscFrequency"], virt["tscScaling"] = virtcaps.tsc(caps_xml) or ("", False)
        try:
            domcaps = await self.libvirt.domain_capabilities_xml(self._arch)
        except _LIBVIRT_ERRORS as e:
            log.warning("capabilities without CPU models: %s", e)
        else:
            mode = "host-model" if self._arch.startswith("ppc") else "custom"
            virt["_models"] = virtcaps.cpu_models(domcaps, mode)
            virt["_features"] = virtcaps.host_model_features(domcaps)
        try:
            versions = await self.libvirt.versions()
            virt["_levels"] = virtcaps.cluster_levels(versions.library, versions.hypervisor)
            virt["zerocopy_migrations"] = await self.libvirt.module_has("VIR_MIGRATE_ZEROCOPY")
        except _LIBVIRT_ERRORS as e:
            log.warning("capabilities without libvirt versions: %s", e)
        return virt

    async def _network_caps(self) -> dict[str, Any]:
        try:
            return await self._network.report()
        except (OSError, TimeoutError) as e:
            log.warning("capabilities without network data: %s", e)
            return {k: type(v)() for k, v in _EMPTY_NETWORK.items()}

    async def _client_iface(self, address: str) -> str:
        if not address:
            return ""
        try:
            return await self._network.device_by_address(address)
        except (OSError, TimeoutError) as e:
            log.warning("cannot tell the interface of %s: %s", address, e)
            return ""

    # -- getStats ----------------------------------------------------------------------

    async def sample_forever(self, interval: float = 2.0) -> None:
        """Take a host sample every `interval` seconds until cancelled."""
        self._sampling = True
        try:
            while True:
                sample = await asyncio.to_thread(self._take_sample)
                self._window.add(sample)
                await asyncio.sleep(interval)
        finally:
            self._sampling = False

    def _take_sample(self) -> sampling.HostSample:
        if not self._ksmd_searched:
            self._ksmd_pid = sampling.find_ksmd()
            self._ksmd_searched = True
        return sampling.take_sample(self._ksmd_pid)

    async def stats(self) -> dict[str, Any]:
        """The getStats `info` member."""
        first, last = await self._sample_pair()
        stats = await asyncio.to_thread(self._local_stats, first, last)
        counts = self._vm_counts()
        stats.update(
            {
                "vmCount": counts.total,
                "vmActive": counts.active,
                "vmMigrating": counts.incoming + counts.outgoing,
                "incomingVmMigrations": counts.incoming,
                "outgoingVmMigrations": counts.outgoing,
                "storageDomains": dict(self._storage_domains()) if self._storage_domains else {},
                "multipathHealth": dict(self._multipath_health()) if self._multipath_health else {},
                "elapsedTime": f"{self._uptime():.2f}",
                "netConfigDirty": str(bool(self._net_config_dirty())),
            }
        )
        return stats

    async def _sample_pair(self) -> tuple[sampling.HostSample, sampling.HostSample]:
        pair = self._window.pair()
        if pair is not None:
            return pair
        fresh = await asyncio.to_thread(self._take_sample)
        last = self._window.last
        if last is not None and fresh.monotonic - last.monotonic >= 0.5:
            first = last
        else:
            first = sampling.boot_sample(fresh.monotonic)
        if not self._sampling:
            # Without the sampler, successive calls measure the time between them.
            self._window.add(fresh)
        return first, fresh

    def _local_stats(self, first: sampling.HostSample, last: sampling.HostSample) -> dict[str, Any]:
        rates = sampling.rates(first, last)
        meminfo = memory.read_meminfo()
        mem = memory.memory_stats(meminfo)
        nodes = numa.read_nodes()
        network = link_statistics()
        try:
            load = parse_loadavg(read_text("/proc/loadavg"))[1]
        except (OSError, ValueError):
            load = "0.0"
        now = time.gmtime()
        stats: dict[str, Any] = {
            "cpuUser": f"{rates.user:.2f}",
            "cpuSys": f"{rates.system:.2f}",
            "cpuIdle": f"{rates.idle:.2f}",
            "cpuLoad": load,
            "cpuUserVdsmd": f"{rates.own_user:.2f}",
            "cpuSysVdsmd": f"{rates.own_system:.2f}",
            "memFree": mem.mem_free,
            "memUsed": mem.mem_used,
            "swapTotal": mem.swap_total,
            "swapFree": mem.swap_free,
            "anonHugePages": mem.anon_huge_pages,
            "hugepages": memory.hugepage_state(),
            "network": network,
            # Totals over all links (upstream swaps the two; this does not).
            "rxDropped": str(sum(int(n["rxDropped"]) for n in network.values())),
            "txDropped": str(sum(int(n["txDropped"]) for n in network.values())),
            "diskStats": self._disk_stats(),
            "thpState": memory.thp_state(),
            "momStatus": "inactive",
            "haStats": dict(NO_HOSTED_ENGINE),
            "dateTime": time.strftime("%Y-%m-%dT%H:%M:%S GMT", now),
            "cpuStatistics": sampling.cpu_statistics(rates, numa.cpu_to_node(nodes)),
            "numaNodeMemFree": numa.stats_memory(nodes),
            "v2vJobs": {},
        }
        stats.update(memory.ksm_stats(memory.read_ksm(), int(rates.ksmd)))
        boot_time = last.stat.boot_time
        if boot_time is not None:
            stats["bootTime"] = str(boot_time)
        return stats

    def _disk_stats(self) -> dict[str, dict[str, str]]:
        """Free MiB (string) of the file systems vdsm writes to."""
        disk: dict[str, dict[str, str]] = {}
        # Upstream's run directory key carries a trailing slash.
        paths = (("/tmp", "/tmp"), ("/var/log", "/var/log"), (self._run_dir, f"{self._run_dir}/"))
        for path, key in paths:
            free = 0
            try:
                st = os.statvfs(path)
                free = st.f_bavail * st.f_frsize // (1024 * 1024)
            except OSError:
                pass
            disk[key] = {"free": str(free)}
        return disk
