"""Re-applying the safe network configuration once per boot (upstream's
`vdsm-tool restore-nets`): changes never made safe do not survive a reboot.

The marker `<run dir>/nets_restored` lives on a tmpfs (/run), so it is gone after a
reboot and present after a mere daemon restart.  The daemon calls `restore_once()` at
start; `vdsm-restore-nets` does the same from the command line (`--force` ignores the
marker).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from vdsm.network.setup import NetworkService

log = logging.getLogger("vdsm.network.restore")

MARKER = "nets_restored"


async def restore_once(service: NetworkService, run_dir: Path, *, force: bool = False) -> bool:
    """True when the safe configuration was (re)applied, False when already done."""
    marker = run_dir / MARKER
    if await asyncio.to_thread(marker.exists) and not force:
        log.debug("network configuration already restored this boot (%s)", marker)
        return False
    if not service.persistence.safe.exists():
        log.info("no safe network configuration to restore")
    else:
        await service.restore_safe()
    await asyncio.to_thread(_touch, marker)
    await service.load()
    return True


def _touch(marker: Path) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def build_service(config_path: Path | None) -> tuple[NetworkService, Path]:
    from vdsm import config as configuration
    from vdsm.network.apply import Applier
    from vdsm.network.connectivity import ConnectivityMonitor
    from vdsm.network.persistence import NetPersistence
    from vdsm.system.iproute import KernelChanger
    from vdsm.system.netlink import Netlink

    files = configuration.config_files(config_path or configuration.DEFAULT_CONFIG)
    cfg, _warnings = configuration.load(files)
    paths = cfg.paths
    service = NetworkService(
        netlink=Netlink(),
        persistence=NetPersistence(paths.state_dir),
        applier=Applier(KernelChanger),
        connectivity=ConnectivityMonitor(paths.run_dir),
    )
    return service, paths.run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vdsm-restore-nets",
        description="Re-apply the safe network configuration (once per boot)",
    )
    parser.add_argument("--config", type=Path, default=None, help="vdsm.conf to read")
    parser.add_argument("--force", action="store_true", help="restore even if done this boot")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        service, run_dir = build_service(args.config)
        done = asyncio.run(restore_once(service, run_dir, force=args.force))
    except Exception as e:
        print(f"vdsm-restore-nets: {e}", file=sys.stderr)
        return 1
    print("restored" if done else "already restored this boot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
