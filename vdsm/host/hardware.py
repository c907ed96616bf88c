"""getHardwareInfo: the machine's identity from the DMI (SMBIOS) tables.

Read from the kernel's sysfs copy of the tables instead of running dmidecode.  Every
key is optional, as upstream reports only the fields the firmware fills.  The serial
number and UUID files are readable by root only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vdsm.errors import CannotRetrieveHWInfo

log = logging.getLogger("vdsm.host.hardware")

DMI_DIR = Path("/sys/class/dmi/id")

# Reported key -> file in the DMI directory.
FIELDS = {
    "systemManufacturer": "sys_vendor",
    "systemProductName": "product_name",
    "systemVersion": "product_version",
    "systemSerialNumber": "product_serial",
    "systemUUID": "product_uuid",
    "systemFamily": "product_family",
}

# What dmidecode (upstream's source) prints instead of a value: empty strings become
# "Not Specified", and the all-zero / all-one UUIDs mean "not present" / "not settable".
_NO_UUID = {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"}


def _usable(key: str, value: str) -> bool:
    if not value or value.lower() == "not specified":
        return False
    return not (key == "systemUUID" and value.lower() in _NO_UUID)


def read_hardware_info(dmi_dir: Path = DMI_DIR) -> dict[str, str]:
    try:
        if not dmi_dir.is_dir():
            raise FileNotFoundError(f"{dmi_dir} does not exist")
        names = {p.name for p in dmi_dir.iterdir()}
    except OSError as e:
        raise CannotRetrieveHWInfo(reason=f"cannot read {dmi_dir}: {e}") from None
    info: dict[str, str] = {}
    for key, name in FIELDS.items():
        if name not in names:
            continue
        try:
            value = (dmi_dir / name).read_text(encoding="utf-8", errors="replace").strip()
        except OSError as e:
            log.debug("cannot read %s: %s", dmi_dir / name, e)
            continue
        if _usable(key, value):
            # dmidecode prints the UUID in upper case; sysfs in lower case.
            info[key] = value.upper() if key == "systemUUID" else value
    return info
