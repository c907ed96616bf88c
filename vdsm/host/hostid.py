"""The host's UUID, reported as getCapabilities' `uuid` and used as sanlock host name.

Rule (upstream's, plus a last resort): the first line of the host id file
(`/etc/vdsm/vdsm.id`, written by host deployment) if it exists and is not empty; else
the firmware's DMI product UUID in lower case; else a random UUID, persisted into the
host id file so the host keeps its identity across restarts (upstream would report
no uuid at all, which the engine cannot use).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vdsm.host.hardware import DMI_DIR

log = logging.getLogger("vdsm.host.hostid")

_NO_UUID = {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"}


def read_host_id_file(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.readline().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("cannot read %s: %s", path, e)
        return None
    return value or None


def dmi_uuid(dmi_dir: Path = DMI_DIR) -> str | None:
    import uuid  # lazily: ~2 ms of start-up for a value read once

    try:
        value = (dmi_dir / "product_uuid").read_text().strip().lower()
    except OSError:
        return None
    if not value or value in _NO_UUID:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        log.warning("ignoring malformed DMI product UUID %r", value)
        return None


def persist_host_id(path: Path, value: str) -> None:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def host_uuid(host_id_file: Path, dmi_dir: Path = DMI_DIR) -> str:
    """Resolve the host UUID (blocking: reads files, may write the host id file)."""
    value = read_host_id_file(host_id_file)
    if value:
        return value
    value = dmi_uuid(dmi_dir)
    if value:
        return value
    import uuid

    value = str(uuid.uuid4())
    try:
        persist_host_id(host_id_file, value)
        log.warning(
            "no host id file and no DMI UUID: generated host id %s into %s", value, host_id_file
        )
    except OSError as e:
        log.error("generated host id %s but cannot persist it to %s: %s", value, host_id_file, e)
    return value
