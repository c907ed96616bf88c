"""Daemon configuration: INI files with upstream's section and key names.

Each section is a frozen dataclass; each field declares its parser and default, so the
table below is the whole list of keys this daemon reads.  Unknown keys are reported as
warnings (upstream configuration files carry many keys this daemon does not use); a
value that does not parse stops the daemon with the file, section and key named.

Files: `/etc/vdsm/vdsm.conf` then `/etc/vdsm/vdsm.conf.d/*.conf` in name order, or
`FILE` then `FILE.d/*.conf` for `vdsmd --config FILE`.  Later files override earlier ones.
"""

from __future__ import annotations

import configparser
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdsm.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/vdsm/vdsm.conf")

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false, yes/no, on/off, 1/0), got {text!r}")


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        if low is not None and value < low:
            raise ValueError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high}, got {value}")
        return value

    return parse


def number(low: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if low is not None and value < low:
            raise ValueError(f"must be >= {low}, got {value}")
        return value

    return parse


def path(text: str) -> Path:
    value = text.strip()
    if not value:
        raise ValueError("expected a path, got an empty value")
    return Path(value)


def optional_path(text: str) -> Path | None:
    value = text.strip()
    return Path(value) if value else None


def string(text: str) -> str:
    return text.strip()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    value = text.strip().upper()
    value = {"WARN": "WARNING", "CRIT": "CRITICAL"}.get(value, value)
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return value


def option(parse: Callable[[str], Any], default: Any, doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Vars:
    ssl: bool = option(boolean, True, "Serve TLS with client certificates on the port")
    trust_store_path: Path = option(
        path, Path("/etc/pki/vdsm"), "Holds keys/vdsmkey.pem, certs/vdsmcert.pem, certs/cacert.pem"
    )
    vm_sample_interval: float = option(
        number(0.1), 15.0, "Seconds between bulk VM stats samples (one libvirt call each)"
    )
    hook_timeout: float = option(number(0.1), 60.0, "Seconds one hook script may run")

    @property
    def key_file(self) -> Path:
        return self.trust_store_path / "keys" / "vdsmkey.pem"

    @property
    def cert_file(self) -> Path:
        return self.trust_store_path / "certs" / "vdsmcert.pem"

    @property
    def ca_file(self) -> Path:
        return self.trust_store_path / "certs" / "cacert.pem"


@dataclass(frozen=True)
class Addresses:
    management_ip: str = option(string, "::", "Address to listen on ('::' falls back to 0.0.0.0)")
    management_port: int = option(integer(0, 65535), 54321, "Port; 0 picks a free one")
    port_file: Path | None = option(
        optional_path, None, "Write HOST:PORT here once serving (useful with port 0)"
    )


@dataclass(frozen=True)
class Irs:
    repository: Path = option(path, Path("/rhev/data-center"), "Storage repository root")
    sd_health_check_delay: float = option(
        number(0.1), 10.0, "Seconds between two checks of a monitored storage domain"
    )
    repo_stats_cache_refresh_timeout: float = option(
        number(0.0),
        300.0,
        "Seconds between two re-reads of a monitored domain's metadata (and VG)",
    )
    maximum_domains_in_pool: int = option(integer(1), 100, "Most storage domains in one pool")
    process_pool_timeout: float = option(
        number(0.1), 60.0, "Seconds allowed for one file operation on a storage domain"
    )
    mount_timeout: float = option(number(1), 180.0, "Seconds allowed for one mount or umount")
    volume_utilization_chunk_mb: int = option(
        integer(128),
        2560,
        "MiB a thin volume on a block domain starts with when no initialSize is given",
    )


@dataclass(frozen=True)
class Sanlock:
    io_timeout: int = option(integer(1, 300), 10, "sanlock I/O timeout in seconds")


@dataclass(frozen=True)
class Spm:
    watchdog_enable: bool = option(
        boolean, True, "Watch the SPM lease; on its loss stop acting as SPM and exit"
    )
    watchdog_interval: float = option(number(0.1), 20.0, "Seconds between SPM lease checks")


@dataclass(frozen=True)
class Mailbox:
    events_enable: bool = option(
        boolean,
        True,
        "The SPM watches the mailbox event block, so an extend request is seen within "
        "events_interval instead of monitor_interval",
    )
    events_interval: float = option(
        number(0.1), 0.5, "Seconds between two reads of the mailbox event block by the SPM"
    )
    monitor_interval: float = option(
        number(0.1), 2.0, "Seconds between two reads of all the hosts' mailboxes by the SPM"
    )


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return value

    return parse


@dataclass(frozen=True)
class Lvm:
    devices: str = option(
        string,
        "/dev/mapper/*",
        "Block devices (space-separated globs) that may hold block storage domains: "
        "LVM and device discovery see these and nothing else",
    )
    timeout: float = option(number(1), 60.0, "Seconds allowed for one LVM command")
    activation: str = option(
        choice("auto", "device-mapper", "metadata-only"),
        "auto",
        "auto: use device-mapper when the kernel has it (/proc/misc), else metadata-only "
        "(block domain metadata works, LV data does not)",
    )


@dataclass(frozen=True)
class Paths:
    state_dir: Path = option(path, Path("/var/lib/vdsm"), "Persistent state")
    run_dir: Path = option(path, Path("/run/vdsm"), "Runtime state (client.log, launch flags)")
    hooks_dir: Path = option(
        path, Path("/usr/libexec/vdsm/hooks"), "Hook scripts, one dir per point"
    )
    host_id_file: Path = option(
        path, Path("/etc/vdsm/vdsm.id"), "Host UUID written by host deployment (vdsm.id)"
    )


@dataclass(frozen=True)
class Logging:
    file: Path | None = option(optional_path, None, "Log file; empty logs to stderr")
    level: str = option(log_level, "INFO", "Root log level")


@dataclass(frozen=True)
class Libvirt:
    uri: str = option(string, "qemu:///system", "libvirt connection URI")
    timeout: float = option(number(0.1), 30.0, "Seconds allowed for one libvirt call")


@dataclass(frozen=True)
class Rpc:
    max_connections: int = option(integer(1), 1000, "Concurrent client connections")
    max_frame_size: int = option(integer(1024), 16 * 1024 * 1024, "Largest STOMP frame, bytes")
    max_header_count: int = option(integer(1), 64, "Most headers in one STOMP frame")
    max_header_length: int = option(integer(64), 8192, "Longest STOMP header line, bytes")
    max_pending_bytes: int = option(
        integer(1024), 64 * 1024 * 1024, "Unsent bytes a client may leave queued before it is cut"
    )
    max_batch_size: int = option(integer(1), 1000, "Most requests in one JSON-RPC batch")
    handshake_timeout: float = option(
        number(0.1), 10.0, "Seconds to finish TLS and send a first byte"
    )
    stall_timeout: float = option(
        number(0.1), 60.0, "Seconds a client may leave its replies unread before it is cut"
    )
    event_queue_size: int = option(
        integer(1), 1000, "Events queued per slow consumer before dropping"
    )
    call_timeout: float = option(
        number(0.1), 600.0, "Seconds a verb may run before it is abandoned"
    )


@dataclass(frozen=True)
class Devel:
    recovery_delay: float = option(
        number(0.0), 0.0, "Test knob: hold start-up recovery this many seconds"
    )


@dataclass(frozen=True)
class Config:
    vars: Vars = field(default_factory=Vars)
    addresses: Addresses = field(default_factory=Addresses)
    irs: Irs = field(default_factory=Irs)
    sanlock: Sanlock = field(default_factory=Sanlock)
    spm: Spm = field(default_factory=Spm)
    mailbox: Mailbox = field(default_factory=Mailbox)
    lvm: Lvm = field(default_factory=Lvm)
    paths: Paths = field(default_factory=Paths)
    logging: Logging = field(default_factory=Logging)
    libvirt: Libvirt = field(default_factory=Libvirt)
    rpc: Rpc = field(default_factory=Rpc)
    devel: Devel = field(default_factory=Devel)

    def replace(self, section: str, **values: Any) -> Config:
        current = getattr(self, section)
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})


_SECTION_TYPES: dict[str, type] = {
    "vars": Vars,
    "addresses": Addresses,
    "irs": Irs,
    "sanlock": Sanlock,
    "spm": Spm,
    "mailbox": Mailbox,
    "lvm": Lvm,
    "paths": Paths,
    "logging": Logging,
    "libvirt": Libvirt,
    "rpc": Rpc,
    "devel": Devel,
}


def config_files(main: Path) -> list[Path]:
    """`main` and the drop-ins of `main.d/*.conf` that exist, in reading order."""
    files = [main] if main.exists() else []
    dropins = Path(str(main) + ".d")
    if dropins.is_dir():
        files.extend(sorted(p for p in dropins.glob("*.conf") if p.is_file()))
    return files


def load(files: Iterable[Path], base: Config | None = None) -> tuple[Config, list[str]]:
    """Read `files` over `base`; return the config and warnings about unknown keys."""
    config = base or Config()
    warnings: list[str] = []
    for file in files:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            with open(file, encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(str(file), "-", "-", f"cannot read: {e}") from None
        except configparser.Error as e:
            raise ConfigError(str(file), "-", "-", f"not an INI file: {e}") from None
        for section in parser.sections():
            config = _apply_section(config, file, section, parser[section], warnings)
    return config, warnings


def _apply_section(
    config: Config,
    file: Path,
    section: str,
    items: configparser.SectionProxy,
    warnings: list[str],
) -> Config:
    section_type = _SECTION_TYPES.get(section)
    if section_type is None:
        warnings.extend(f"{file}: [{section}] {key}: unknown key, ignored" for key in items)
        return config
    known = {f.name: f for f in dataclasses.fields(section_type)}
    values: dict[str, Any] = {}
    for key, text in items.items():
        spec = known.get(key)
        if spec is None:
            warnings.append(f"{file}: [{section}] {key}: unknown key, ignored")
            continue
        try:
            values[key] = spec.metadata["parse"](text)
        except ValueError as e:
            raise ConfigError(str(file), section, key, str(e)) from None
    return config.replace(section, **values) if values else config


def developer_defaults(root: Path) -> Config:
    """The embedded defaults `make run` uses: plain TCP on loopback, state under `root`."""
    root = root.resolve()
    return Config(
        vars=Vars(ssl=False, trust_store_path=root / "pki"),
        addresses=Addresses(management_ip="127.0.0.1", management_port=54321),
        irs=Irs(repository=root / "data-center"),
        paths=Paths(
            state_dir=root / "state",
            run_dir=root / "run",
            hooks_dir=root / "hooks",
            host_id_file=root / "state" / "vdsm.id",
        ),
    )


def describe() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every key: the reference the README prints."""
    rows = []
    for name, section_type in _SECTION_TYPES.items():
        for f in dataclasses.fields(section_type):
            rows.append((name, f.name, f.default, f.metadata["doc"]))
    return rows
