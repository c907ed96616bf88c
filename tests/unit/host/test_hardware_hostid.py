import uuid

import pytest

from vdsm.errors import CannotRetrieveHWInfo
from vdsm.host import hostid
from vdsm.host.hardware import read_hardware_info

UUID = "4c4c4544-0042-3510-8052-b4c04f4b4d32"


def make_dmi(path, **files):
    path.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (path / name).write_text(value + "\n")
    return path


def test_all_fields(tmp_path):
    dmi = make_dmi(
        tmp_path / "dmi",
        sys_vendor="Dell Inc.",
        product_name="PowerEdge R640",
        product_version="1.0",
        product_serial="ABC1234",
        product_uuid=UUID,
        product_family="PowerEdge",
        bios_vendor="ignored",
    )
    assert read_hardware_info(dmi) == {
        "systemManufacturer": "Dell Inc.",
        "systemProductName": "PowerEdge R640",
        "systemVersion": "1.0",
        "systemSerialNumber": "ABC1234",
        "systemUUID": UUID.upper(),
        "systemFamily": "PowerEdge",
    }


def test_unset_fields_are_left_out(tmp_path):
    dmi = make_dmi(
        tmp_path / "dmi",
        sys_vendor="QEMU",
        product_name="Standard PC (Q35 + ICH9, 2009)",
        product_version="",
        product_serial="Not Specified",
        product_uuid="00000000-0000-0000-0000-000000000000",
    )
    assert read_hardware_info(dmi) == {
        "systemManufacturer": "QEMU",
        "systemProductName": "Standard PC (Q35 + ICH9, 2009)",
    }


def test_missing_directory_is_error_57(tmp_path):
    with pytest.raises(CannotRetrieveHWInfo) as info:
        read_hardware_info(tmp_path / "nodmi")
    assert info.value.code == 57
    assert "nodmi" in str(info.value)


def test_host_id_file_wins(tmp_path):
    id_file = tmp_path / "vdsm.id"
    id_file.write_text("my-host-id\nsecond line\n")
    dmi = make_dmi(tmp_path / "dmi", product_uuid=UUID)
    assert hostid.host_uuid(id_file, dmi) == "my-host-id"


def test_dmi_uuid_lower_case_without_writing(tmp_path):
    id_file = tmp_path / "vdsm.id"
    dmi = make_dmi(tmp_path / "dmi", product_uuid=UUID.upper())
    assert hostid.host_uuid(id_file, dmi) == UUID
    assert not id_file.exists()


def test_generated_and_persisted(tmp_path):
    id_file = tmp_path / "etc" / "vdsm" / "vdsm.id"
    dmi = make_dmi(tmp_path / "dmi", product_uuid="ffffffff-ffff-ffff-ffff-ffffffffffff")
    first = hostid.host_uuid(id_file, dmi)
    assert str(uuid.UUID(first)) == first
    assert id_file.read_text() == first + "\n"
    assert hostid.host_uuid(id_file, dmi) == first


def test_empty_id_file_falls_through(tmp_path):
    id_file = tmp_path / "vdsm.id"
    id_file.write_text("\n")
    dmi = make_dmi(tmp_path / "dmi", product_uuid=UUID)
    assert hostid.host_uuid(id_file, dmi) == UUID
