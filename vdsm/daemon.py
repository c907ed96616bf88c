"""vdsmd: the composition root.

Reads the configuration, builds every component from it, serves the management port,
runs the background loops in one TaskGroup, and stops cleanly on SIGTERM/SIGINT.

Start-up order: bind the port (READY=1 to the service manager as soon as requests are
answered), then recover (every verb but the ping family answers 99 meanwhile), then
ready (events flow).  Recovery after a crash is the normal start path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdsm import __version__, logutils
from vdsm import config as configuration
from vdsm.config import Config
from vdsm.errors import ConfigError
from vdsm.events import EventBus
from vdsm.lifecycle import Lifecycle, Phase
from vdsm.system.systemd import Notifier

if TYPE_CHECKING:
    from vdsm.rpc.http import HttpApi

log = logging.getLogger("vdsm.daemon")


class StartupError(Exception):
    """The daemon cannot start (port taken, TLS files missing...)."""


class Daemon:
    def __init__(self, config: Config, *, developer_mode: bool = False) -> None:
        self.config = config
        self.developer_mode = developer_mode
        self.lifecycle = Lifecycle()
        self.bus = EventBus()
        self.notifier = Notifier()
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    # -- composition ---------------------------------------------------------------------

    def _prepare_directories(self) -> None:
        paths = self.config.paths
        for directory in (paths.run_dir, paths.state_dir, paths.hooks_dir):
            directory.mkdir(parents=True, exist_ok=True)

    async def _build(self) -> None:
        # Imported here so that a configuration error is reported before the heavier
        # imports, and `vdsmd --help` stays instant.
        from vdsm.api import registry, schema
        from vdsm.api.devices import DeviceHostAPI, LVMVolumeGroupAPI
        from vdsm.api.host import HostAPI
        from vdsm.api.image import DomainImagesAPI, ImageAPI, PoolImagesAPI
        from vdsm.api.lease import LeaseAPI
        from vdsm.api.network import HostNetworkAPI
        from vdsm.api.sdm import SdmAPI
        from vdsm.api.storagedomain import StorageDomainAPI
        from vdsm.api.storagepool import StoragePoolAPI
        from vdsm.api.task import TaskAPI
        from vdsm.api.vm import VMAPI, VmHostAPI
        from vdsm.api.volume import VolumeAPI
        from vdsm.hooks.runner import HookRunner
        from vdsm.host.capabilities import HostInfo, VmCounts
        from vdsm.jobs import JobRegistry
        from vdsm.network.apply import Applier
        from vdsm.network.connectivity import ConnectivityMonitor
        from vdsm.network.dhcp import DhcpClients
        from vdsm.network.monitor import NetworkChangeMonitor
        from vdsm.network.persistence import NetPersistence
        from vdsm.network.report import NetworkReport
        from vdsm.network.resolver import Resolver
        from vdsm.network.setup import NetworkService
        from vdsm.network.stats import NetworkStatistics
        from vdsm.rpc.http_frontend import HttpFrontend
        from vdsm.rpc.jsonrpc import Dispatcher
        from vdsm.rpc.listener import Listener, TlsFiles, server_ssl_context
        from vdsm.rpc.metrics import Metrics
        from vdsm.rpc.stomp import Limits
        from vdsm.rpc.stomp_server import ServerSettings, StompBroker
        from vdsm.storage.clusterlock import DomainLock
        from vdsm.storage.connections import StorageConnections
        from vdsm.storage.devices import BlockDevices, Discovery
        from vdsm.storage.images import Images, VolumeCopier
        from vdsm.storage.leases import Leases
        from vdsm.storage.mailbox import MailboxSettings
        from vdsm.storage.monitor import MonitorRegistry
        from vdsm.storage.probe import Prober
        from vdsm.storage.repository import Repository
        from vdsm.storage.sdm import Sdm
        from vdsm.storage.service import DomainCache, StorageService
        from vdsm.storage.spmwatchdog import LeaseWatchdog
        from vdsm.storage.tasks import RollbackRegistry, TaskManager
        from vdsm.storage.volumegroups import VolumeGroups
        from vdsm.storage.volumes import Volumes
        from vdsm.system.iproute import KernelChanger
        from vdsm.system.libvirt import Libvirt
        from vdsm.system.lvm import Lvm
        from vdsm.system.netlink import Netlink
        from vdsm.system.sanlock import Sanlock
        from vdsm.system.udev import BlockEvents
        from vdsm.virt.manager import VmManager
        from vdsm.virt.storage import StorageImagePreparer

        cfg = self.config
        self.metrics = metrics = Metrics()
        metrics.register(
            "vdsm_events_published_total",
            "counter",
            "Notifications published.",
            lambda: self.bus.published,
        )
        metrics.register(
            "vdsm_events_dropped_total",
            "counter",
            "Notifications a slow consumer could not take.",
            lambda: self.bus.dropped,
        )
        metrics.register(
            "vdsm_ready",
            "gauge",
            "1 once start-up recovery has finished.",
            lambda: 1 if self.lifecycle.is_ready else 0,
        )

        self.libvirt = Libvirt(cfg.libvirt.uri, cfg.libvirt.timeout)
        self.hooks = HookRunner(cfg.paths.hooks_dir, timeout=cfg.vars.hook_timeout)
        self.vms = VmManager(
            self.libvirt,
            self.hooks,
            self.bus.publish,
            cfg.paths.run_dir,
            sample_interval=cfg.vars.vm_sample_interval,
        )
        self.vms.attach(self.libvirt)
        netlink = Netlink()
        network_report = NetworkReport(netlink)
        self.host_info = HostInfo(
            libvirt=self.libvirt,
            hooks_dir=cfg.paths.hooks_dir,
            host_id_file=cfg.paths.host_id_file,
            network=network_report,
            run_dir=cfg.paths.run_dir,
            uptime=lambda: self.lifecycle.uptime,
            net_config_dirty=lambda: self.network.config_dirty(),
            # Built below; only called once requests are served.
            storage_domains=lambda: self.storage_monitor.stats(),
            vm_counts=lambda: VmCounts(total=self.vms.count_all(), active=self.vms.count_up()),
        )
        self.network_monitor = NetworkChangeMonitor(self.bus, netlink, network_report)
        connectivity = ConnectivityMonitor(cfg.paths.run_dir)
        self.network = NetworkService(
            netlink=netlink,
            persistence=NetPersistence(cfg.paths.state_dir),
            applier=Applier(KernelChanger),
            connectivity=connectivity,
            report=network_report,
            hooks=self.hooks,
            dhcp=DhcpClients(cfg.paths.run_dir),
            resolver=Resolver(),
        )
        network_report.networks = lambda: self.network.running_config().networks

        # -- storage ---------------------------------------------------------------
        sanlock = Sanlock(cfg.sanlock.io_timeout)
        block_devices = BlockDevices(cfg.lvm.devices)
        self.lvm = Lvm(
            block_devices.paths,
            timeout=cfg.lvm.timeout,
            device_mapper=None
            if cfg.lvm.activation == "auto"
            else cfg.lvm.activation == "device-mapper",
        )
        log.info("LVM: %s mode, devices %s", self.lvm.mode, cfg.lvm.devices)
        self.discovery = Discovery(block_devices, self.lvm, timeout=cfg.lvm.timeout)
        self.block_events = BlockEvents(self.discovery.on_event)
        volume_groups = VolumeGroups(self.lvm, self.discovery)
        repository = Repository(cfg.irs.repository, probe_timeout=cfg.irs.process_pool_timeout)
        repository.prepare()

        def lock_factory(
            sd_uuid: str, ids: Path, leases: Path, alignment: int, block_size: int
        ) -> DomainLock:
            return DomainLock(
                sanlock,
                sd_uuid,
                ids,
                leases,
                alignment=alignment,
                block_size=block_size,
                io_timeout=cfg.sanlock.io_timeout,
            )

        domains = DomainCache(
            repository,
            lock_factory,
            cfg.irs.process_pool_timeout,
            self.lvm,
            block_chunk=cfg.irs.volume_utilization_chunk_mb * 1024 * 1024,
        )
        prober = Prober()
        self.storage_monitor = MonitorRegistry(
            produce=domains.produce,
            read_delay=prober.read_delay,
            interval=cfg.irs.sd_health_check_delay,
            refresh_interval=cfg.irs.repo_stats_cache_refresh_timeout,
        )
        self.tasks = TaskManager(RollbackRegistry())
        connections = StorageConnections(
            cfg.irs.repository,
            mount_timeout=cfg.irs.mount_timeout,
            check_timeout=cfg.irs.process_pool_timeout,
        )
        watchdog = None
        if cfg.spm.watchdog_enable:

            def watchdog(pool: Any, lver: int, on_lost: Any) -> LeaseWatchdog:
                return LeaseWatchdog(pool.master.lock, lver, cfg.spm.watchdog_interval, on_lost)

        self.storage = StorageService(
            repository=repository,
            domains=domains,
            monitor=self.storage_monitor,
            tasks=self.tasks,
            rollbacks=self.tasks.rollbacks,
            mount_point=connections.mount_point,
            watchdog=watchdog,
            panic=panic,
            max_domains=cfg.irs.maximum_domains_in_pool,
            join_timeout=180.0,
            mailbox=MailboxSettings(
                monitor_interval=cfg.mailbox.monitor_interval,
                events_interval=cfg.mailbox.events_interval if cfg.mailbox.events_enable else None,
                io_timeout=cfg.irs.process_pool_timeout,
            ),
        )

        jobs = JobRegistry()
        volumes = Volumes(self.storage)
        images = Images(volumes, cfg.paths.run_dir / "storage")
        # VM drives on storage domains are prepared by the storage side's Image.prepare.
        self.vms.backends.preparer = StorageImagePreparer(images)
        apis = [
            HostAPI(
                facts=self.host_info,
                connectivity=connectivity,
                tasks=self.tasks,
                jobs=jobs,
                storage=self.storage,
                hooks=self.hooks,
            ),
            VolumeAPI(volumes=volumes, copier=VolumeCopier(images)),
            ImageAPI(images=images),
            DomainImagesAPI(images=images),
            PoolImagesAPI(images=images),
            SdmAPI(sdm=Sdm(volumes, images, jobs, self.bus.publish)),
            StoragePoolAPI(storage=self.storage, connections=connections),
            StorageDomainAPI(storage=self.storage, volume_groups=volume_groups),
            TaskAPI(tasks=self.tasks),
            LeaseAPI(leases=Leases(self.storage, sanlock, timeout=cfg.irs.process_pool_timeout)),
            HostNetworkAPI(
                service=self.network, report=network_report, statistics=NetworkStatistics()
            ),
            VMAPI(vms=self.vms),
            VmHostAPI(vms=self.vms),
            DeviceHostAPI(discovery=self.discovery, volume_groups=volume_groups),
            LVMVolumeGroupAPI(volume_groups=volume_groups),
        ]
        table = registry.build(schema.load(), apis)
        dispatcher = Dispatcher(
            table,
            self.lifecycle,
            metrics,
            max_batch_size=cfg.rpc.max_batch_size,
            call_timeout=cfg.rpc.call_timeout,
        )
        self.broker = StompBroker(
            dispatcher.handle,
            metrics,
            ServerSettings(
                limits=Limits(
                    max_frame_size=cfg.rpc.max_frame_size,
                    max_header_count=cfg.rpc.max_header_count,
                    max_header_length=cfg.rpc.max_header_length,
                ),
                max_pending_bytes=cfg.rpc.max_pending_bytes,
                stall_timeout=cfg.rpc.stall_timeout,
            ),
        )
        self.bus.subscribe(self.broker.deliver_event)

        def build_http_api() -> HttpApi:
            from vdsm.rpc.http import HttpApi  # aiohttp: loaded on the first HTTP client

            return HttpApi(
                dispatcher,
                self.lifecycle,
                metrics,
                self.bus,
                max_body_size=cfg.rpc.max_frame_size,
                event_queue_size=cfg.rpc.event_queue_size,
            )

        self.http = HttpFrontend(build_http_api)
        ssl_context = None
        if cfg.vars.ssl:
            try:
                ssl_context = server_ssl_context(
                    TlsFiles(cfg.vars.key_file, cfg.vars.cert_file, cfg.vars.ca_file)
                )
            except (OSError, ValueError) as e:
                raise StartupError(f"cannot set up TLS: {e}") from None
        self.listener = Listener(
            broker=self.broker,
            http_builder=self.http.protocol_factory,
            metrics=metrics,
            ssl_context=ssl_context,
            max_connections=cfg.rpc.max_connections,
            handshake_timeout=cfg.rpc.handshake_timeout,
        )

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._request_stop, signum)
        self._prepare_directories()
        await self._build()
        await self.hooks.run("before_vdsm_start", raise_on_error=False)
        address = await self._serve()
        try:
            async with asyncio.TaskGroup() as group:
                self._spawn(group, self._recover(), "recovery")
                self._spawn(group, self.host_info.sample_forever(), "host stats sampler")
                self._spawn(group, self.network_monitor.run(), "network monitor")
                self._spawn(group, self.storage_monitor.run(), "storage domain monitors")
                self._spawn(group, self.vms.sample_forever(), "VM stats sampler")
                self._spawn(group, self.block_events.run(), "block device events")
                if self.notifier.watchdog_interval:
                    self._spawn(group, self._watchdog(self.notifier.watchdog_interval), "watchdog")
                self._announce(address)
                await self._stop.wait()
                await self._shutdown()
                for task in self._background:
                    task.cancel()
        finally:
            await self._release()

    def _spawn(self, group: asyncio.TaskGroup, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._background.append(group.create_task(coro, name=name))

    async def _serve(self) -> tuple[str, int]:
        cfg = self.config.addresses
        try:
            host, port = await self.listener.start(cfg.management_ip, cfg.management_port)
        except OSError as e:
            raise StartupError(
                f"cannot listen on {cfg.management_ip}:{cfg.management_port}: {e.strerror or e}"
            ) from None
        if cfg.port_file is not None:
            _write_atomically(cfg.port_file, f"{host}:{port}\n")
        self.lifecycle.enter(Phase.RECOVERING)
        self.notifier.notify("READY=1", f"STATUS=serving on {host}:{port}, recovering")
        return host, port

    def _announce(self, address: tuple[str, int]) -> None:
        host, port = address
        tls = "TLS" if self.config.vars.ssl else "plain TCP"
        log.info("vdsm %s serving on %s:%d (%s)", __version__, host, port, tls)
        if self.developer_mode:
            shown = "127.0.0.1" if host in ("::", "0.0.0.0") else host
            insecure = "" if self.config.vars.ssl else " --insecure"
            log.info(
                "talk to it with: .venv/bin/vdsm-client -a %s -p %d%s Host getCapabilities",
                shown,
                port,
                insecure,
            )

    async def _recover(self) -> None:
        delay = self.config.devel.recovery_delay
        if delay:
            log.info("holding recovery for %.1f s ([devel] recovery_delay)", delay)
            await asyncio.sleep(delay)
        await self._restore_networks()
        await self._connect_libvirt()
        await self.vms.recover()
        self.lifecycle.enter(Phase.READY)
        self.bus.enabled = True
        self.notifier.notify("STATUS=ready")
        log.info("recovery finished in %.2f s since start, ready", self.lifecycle.uptime)
        await self.storage.deactivate_unused_lvs()

    async def _restore_networks(self) -> None:
        from vdsm.network.restore import restore_once

        try:
            await self.network.load()
            await restore_once(self.network, self.config.paths.run_dir)
        except Exception:
            # The host keeps whatever network it has; the engine can still reach it.
            log.exception("cannot restore the safe network configuration")

    async def _connect_libvirt(self) -> None:
        from vdsm.system.libvirt import Libvirt, LibvirtError

        try:
            await self.libvirt.connect()
            log.info("connected to libvirt at %s", self.libvirt.uri)
            return
        except LibvirtError as e:
            if not self.developer_mode:
                log.warning(
                    "libvirt at %s is unreachable (%s); will retry on demand", self.libvirt.uri, e
                )
                return
            log.warning(
                "libvirt at %s is unreachable (%s): using libvirt's embedded test driver "
                "test:///default instead; VMs will not really run",
                self.libvirt.uri,
                e,
            )
        fallback = Libvirt("test:///default", self.config.libvirt.timeout)
        self.vms.attach(fallback)
        await fallback.connect()
        self.libvirt = fallback
        self.host_info.libvirt = fallback

    async def _watchdog(self, interval: float) -> None:
        # Runs on the event loop: if the loop is stuck, the pings stop and the service
        # manager restarts us.
        while True:
            self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _request_stop(self, signum: int) -> None:
        if not self._stop.is_set():
            log.info("received %s, stopping", signal.Signals(signum).name)
            self._stop.set()

    async def _shutdown(self) -> None:
        self.lifecycle.enter(Phase.STOPPING)
        self.notifier.notify("STOPPING=1")
        self.bus.enabled = False
        self.listener.stop_accepting()
        self.listener.close_connections()
        await self.http.close()
        await self.listener.wait_closed(timeout=5.0)
        await self.storage.shutdown()
        await self.network.close()

    async def _release(self) -> None:
        with contextlib.suppress(Exception):
            await self.libvirt.close()
        with contextlib.suppress(Exception):
            await self.hooks.run("after_vdsm_stop", raise_on_error=False)
        port_file = self.config.addresses.port_file
        if port_file is not None:
            with contextlib.suppress(OSError):
                port_file.unlink()
        self.notifier.close()
        log.info("vdsm stopped")


def panic(reason: str) -> None:
    """Upstream's panic: log, then kill ourselves and our children at once; the service
    manager restarts us.  Used when continuing could corrupt shared storage."""
    log.critical("panic: %s", reason)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    if os.getpgrp() == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vdsmd", description="oVirt host agent")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"configuration file (default {configuration.DEFAULT_CONFIG}); "
        "FILE.d/*.conf drop-ins are read after it",
    )
    parser.add_argument(
        "--dev",
        nargs="?",
        const=Path(".run"),
        type=Path,
        default=None,
        metavar="DIR",
        help="developer defaults: plain TCP on 127.0.0.1:54321, all state under DIR "
        "(default ./.run), /etc/vdsm not read",
    )
    parser.add_argument("--version", action="version", version=f"vdsmd {__version__}")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> tuple[Config, list[str]]:
    if args.dev is not None:
        base = configuration.developer_defaults(args.dev)
        files = configuration.config_files(args.config) if args.config else []
    else:
        base = Config()
        main = args.config or configuration.DEFAULT_CONFIG
        if args.config and not args.config.exists():
            raise ConfigError(str(args.config), "-", "-", "no such file")
        files = configuration.config_files(main)
    return configuration.load(files, base)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config, warnings = load_config(args)
    except ConfigError as e:
        print(f"vdsmd: configuration error: {e}", file=sys.stderr)
        return 1
    logutils.setup(config.logging.level, config.logging.file)
    for warning in warnings:
        log.warning("config: %s", warning)
    try:
        asyncio.run(Daemon(config, developer_mode=args.dev is not None).run())
    except StartupError as e:
        log.error("cannot start: %s", e)
        return 1
    except KeyboardInterrupt:
        pass
    except Exception:
        # A background loop failed: say so once; the service manager restarts us.
        log.critical("vdsm stopped on an unexpected error", exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
