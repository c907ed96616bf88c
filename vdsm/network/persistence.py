"""Network configurations on disk, in upstream's layout (contract §6.2).

    <state>/staging/netconf/      the running configuration (what setupNetworks made)
    <state>/persistence/netconf/  the safe one (setSafeNetworkConfig), restored at boot

Each holds `nets/<name>`, `bonds/<name>` and `devices/<name>`: one JSON file per
entity, indent 4, canonical attributes.  Upstream writes `devices/<nic>` only for
SR-IOV (`{"sriov": {"numvfs": N}}`, from Host.hostdevChangeNumvfs, re-applied by its
restore before the networks); this daemon has neither the verb nor SR-IOV restore, so
device files are read and written back unchanged, never dropped by a save.

`netconf` is a symlink to a sibling directory with a random suffix; a save writes a
complete new directory, then renames a new symlink over the old one, so a reader (or a
crash) sees the old configuration or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from vdsm.errors.network import NetworkConfigError
from vdsm.network.model import NetConfig, canonical_bond, canonical_network

log = logging.getLogger("vdsm.network.persistence")

SECTIONS = {"nets": "networks", "bonds": "bonds", "devices": "devices"}


def _device(name: str, attrs: Any) -> dict[str, Any]:
    if not isinstance(attrs, dict):
        raise ValueError(f"device {name}: not a JSON object")
    return attrs


CANONICAL = {"nets": canonical_network, "bonds": canonical_bond, "devices": _device}


class ConfigStore:
    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = path  # .../netconf
        self.durable = durable  # fsync before the swap (the safe configuration)

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> NetConfig:
        config = NetConfig()
        for directory, attr in SECTIONS.items():
            section: dict[str, dict[str, Any]] = getattr(config, attr)
            base = self.path / directory
            try:
                names = sorted(p.name for p in base.iterdir())
            except FileNotFoundError:
                continue
            for name in names:
                # Files written by upstream or by hand may leave defaults out.
                try:
                    section[name] = CANONICAL[directory](
                        name, json.loads((base / name).read_text())
                    )
                except (OSError, ValueError, NetworkConfigError) as e:
                    log.error("ignoring unusable %s: %s", base / name, e)
        return config

    def save(self, config: NetConfig) -> None:
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        target = parent / f"{self.path.name}.{secrets.token_hex(4)}"
        target.mkdir()
        try:
            for directory, attr in SECTIONS.items():
                (target / directory).mkdir()
                for name, attrs in getattr(config, attr).items():
                    self._write(target / directory / name, attrs)
            if self.durable:
                _fsync_tree(target)
            self._swap(target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise

    def copy_from(self, other: ConfigStore) -> None:
        self.save(other.load())

    def _write(self, path: Path, attrs: dict[str, Any]) -> None:
        with open(path, "w") as f:
            json.dump(attrs, f, indent=4, sort_keys=True)
            if self.durable:
                f.flush()
                os.fsync(f.fileno())

    def _swap(self, target: Path) -> None:
        previous: Path | None = None
        if self.path.is_symlink():
            previous = self.path.parent / os.readlink(self.path)
        elif self.path.exists():
            # A plain directory (an older layout): moved aside, removed after the swap.
            previous = self.path.with_name(f"{self.path.name}.old-{secrets.token_hex(4)}")
            self.path.rename(previous)
        link = self.path.with_name(f".{self.path.name}.link-{secrets.token_hex(4)}")
        os.symlink(target.name, link)
        os.replace(link, self.path)
        if self.durable:
            _fsync_dir(self.path.parent)
        if previous is not None and previous.resolve() != target.resolve():
            shutil.rmtree(previous, ignore_errors=True)

    def remove(self) -> None:
        if self.path.is_symlink():
            target = self.path.parent / os.readlink(self.path)
            self.path.unlink()
            shutil.rmtree(target, ignore_errors=True)
        elif self.path.exists():
            shutil.rmtree(self.path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for directory, _dirs, _files in os.walk(root):
        with contextlib.suppress(OSError):
            _fsync_dir(Path(directory))


class NetPersistence:
    """The pair of stores under a state dir, and what "dirty" means for them."""

    def __init__(self, state_dir: Path) -> None:
        self.running = ConfigStore(state_dir / "staging" / "netconf")
        self.safe = ConfigStore(state_dir / "persistence" / "netconf", durable=True)

    def dirty(self) -> bool:
        """The running configuration differs from the safe one (netConfigDirty)."""
        return self.running.load() != self.safe.load()

    def commit(self) -> None:
        self.safe.copy_from(self.running)
