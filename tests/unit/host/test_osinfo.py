import os

from vdsm.host import osinfo


def test_debian(tmp_path):
    (tmp_path / "debian_version").write_text("12.11\n")
    (tmp_path / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    )
    assert osinfo.operating_system(tmp_path) == {
        "release": "",
        "version": "12.11",
        "name": "Debian",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    }


def test_rhel_family(tmp_path):
    (tmp_path / "redhat-release").write_text("CentOS Stream release 9\n")
    (tmp_path / "os-release").write_text('PRETTY_NAME="CentOS Stream 9"\nVERSION_ID="9"\n')
    info = osinfo.operating_system(tmp_path)
    assert info["name"] == "RHEL" and info["version"] == "9"
    (tmp_path / "fedora-release").write_text("Fedora release 40\n")
    assert osinfo.operating_system(tmp_path)["name"] == "Fedora"


def test_ovirt_node(tmp_path):
    (tmp_path / "redhat-release").write_text("x\n")
    (tmp_path / "ovirt-node-ng-release").write_text("x\n")
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "version").write_text("VERSION=4.5.5\nRELEASE=1.el9\n")
    info = osinfo.operating_system(tmp_path)
    assert info == {"release": "1.el9", "version": "4.5.5", "name": "oVirt Node", "pretty_name": ""}


def test_unknown(tmp_path):
    assert osinfo.operating_system(tmp_path)["name"] == "unknown"


def test_kernel_version():
    assert osinfo.kernel_version("5.14.0-427.el9.x86_64") == {
        "version": "5.14.0",
        "release": "427.el9.x86_64",
    }
    assert osinfo.kernel_version("6.1.0") == {"version": "0", "release": "0"}


def test_selinux(tmp_path):
    assert osinfo.selinux_mode((tmp_path / "none",)) == {"mode": "-1"}
    (tmp_path / "enforce").write_text("1")
    assert osinfo.selinux_mode((tmp_path,)) == {"mode": "1"}


def test_fips(tmp_path):
    path = tmp_path / "fips_enabled"
    assert osinfo.fips_enabled(path) is False
    path.write_text("1\n")
    assert osinfo.fips_enabled(path) is True


def test_kdump(tmp_path):
    loaded, conf = tmp_path / "kexec_crash_loaded", tmp_path / "kdump.conf"
    assert osinfo.kdump_status(loaded, conf) == -1
    loaded.write_text("0\n")
    assert osinfo.kdump_status(loaded, conf) == 0
    loaded.write_text("1\n")
    assert osinfo.kdump_status(loaded, conf) == -1  # no kdump.conf
    conf.write_text("path /var/crash\n")
    assert osinfo.kdump_status(loaded, conf) == 0
    conf.write_text("path /var/crash\nfence_kdump_nodes engine.example.com\n")
    assert osinfo.kdump_status(loaded, conf) == 1


def test_vulnerabilities(tmp_path):
    (tmp_path / "spectre_v2").write_text("Mitigation: Retpolines\n")
    (tmp_path / "meltdown").write_text("Not affected\n")
    assert osinfo.cpu_vulnerabilities(tmp_path) == {
        "MELTDOWN": "Not affected",
        "SPECTRE_V2": "Mitigation: Retpolines",
    }


def test_rng_sources(tmp_path):
    (tmp_path / "random").touch()
    assert osinfo.rng_sources(tmp_path) == ["random"]
    (tmp_path / "hwrng").touch()
    (tmp_path / "urandom").touch()
    assert osinfo.rng_sources(tmp_path) == ["random", "hwrng"]


def test_vnc_tls(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_text("#vnc_tls = 1\n")
    assert osinfo.vnc_encrypted(conf) is False
    conf.write_text('vnc_listen = "0.0.0.0"\nvnc_tls = 1\n')
    assert osinfo.vnc_encrypted(conf) is True


def test_boot_uuid_from_by_uuid_link(tmp_path):
    # /dev/null is a device (1:3) every host has; pretend /boot lives on it.
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 1:3 / /boot rw - xfs none rw\n"
    )
    by_uuid = tmp_path / "by-uuid"
    by_uuid.mkdir()
    os.symlink("/dev/zero", by_uuid / "1111-zero")
    os.symlink("/dev/null", by_uuid / "2222-null")
    assert osinfo.boot_uuid(mountinfo, by_uuid, tmp_path / "udev") == "2222-null"


def test_boot_uuid_from_udev_database(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("27 1 254:7 / / rw - ext4 none rw\n")
    udev = tmp_path / "udev"
    udev.mkdir()
    (udev / "b254:7").write_text("S:disk/by-uuid/x\nE:ID_FS_TYPE=ext4\nE:ID_FS_UUID=abcd-1234\n")
    assert osinfo.boot_uuid(mountinfo, tmp_path / "none", udev) == "abcd-1234"
    assert osinfo.boot_uuid(mountinfo, tmp_path / "none", tmp_path / "none") is None


def test_iscsi_and_hba(tmp_path):
    initiator = tmp_path / "initiatorname.iscsi"
    fc = tmp_path / "fc_host"
    assert osinfo.hba_inventory(initiator, fc) == {"iSCSI": [], "FC": []}
    assert osinfo.iscsi_initiator_name(initiator) == ""
    initiator.write_text("## comment\nInitiatorName=iqn.1994-05.com.redhat:abc\n")
    host = fc / "host3"
    scsi = host / "device" / "scsi_host" / "host3"
    scsi.mkdir(parents=True)
    (host / "port_name").write_text("0x10000090fa1b2c3d\n")
    (host / "node_name").write_text("0x20000090fa1b2c3d\n")
    (scsi / "model_name").write_text("LPe12002\n")
    (scsi / "model_desc").write_text("Emulex 8Gb FC\n")
    assert osinfo.iscsi_initiator_name(initiator) == "iqn.1994-05.com.redhat:abc"
    assert osinfo.hba_inventory(initiator, fc) == {
        "iSCSI": [{"InitiatorName": "iqn.1994-05.com.redhat:abc"}],
        "FC": [
            {
                "wwpn": "10000090fa1b2c3d",
                "wwnn": "20000090fa1b2c3d",
                "model": "LPe12002 - Emulex 8Gb FC",
            }
        ],
    }


def test_nested(tmp_path):
    assert osinfo.nested_virtualization(tmp_path) is False
    params = tmp_path / "kvm_amd" / "parameters"
    params.mkdir(parents=True)
    (params / "nested").write_text("1\n")
    assert osinfo.nested_virtualization(tmp_path) is True
