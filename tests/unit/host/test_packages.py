from vdsm.host import packages


def test_debian_versions():
    assert packages.split_deb_version("1:7.2+dfsg-7+deb12u18+b3") == {
        "version": "7.2",
        "release": "7+deb12u18+b3",
    }
    assert packages.split_deb_version("9.0.0-4+deb12u2") == {
        "version": "9.0.0",
        "release": "4+deb12u2",
    }
    assert packages.split_deb_version("2.03.16-2") == {"version": "2.03.16", "release": "2"}
    assert packages.split_deb_version("1.0") == {"version": "1.0", "release": ""}


def test_dpkg_query_output():
    output = (
        "libvirt0:amd64\t9.0.0-4+deb12u2\tii \n"
        "qemu-kvm\t\tun \n"
        "qemu-system-x86\t1:7.2+dfsg-7\tii \n"
        "removed\t1.0-1\trc \n"
        "garbage line\n"
    )
    installed = packages.parse_dpkg_query(output)
    assert set(installed) == {"libvirt0", "qemu-system-x86"}
    picked = packages.pick(installed, packages.DEB_PACKAGES)
    assert picked == {
        "libvirt": {"version": "9.0.0", "release": "4+deb12u2"},
        "qemu-kvm": {"version": "7.2", "release": "7"},
    }


def test_rpm_output_and_candidates_order():
    output = (
        "libvirt-daemon-kvm\t10.10.0\t3.el9\n"
        "package libvirt is not installed\n"
        "qemu-kvm\t9.1.0\t15.el9\n"
        "qemu-img-rhev\t6.0.0\t1.el8\n"
        "qemu-img\t9.1.0\t15.el9\n"
    )
    picked = packages.pick(packages.parse_rpm_query(output), packages.RPM_PACKAGES)
    assert picked["libvirt"] == {"version": "10.10.0", "release": "3.el9"}
    assert picked["qemu-img"] == {"version": "9.1.0", "release": "15.el9"}  # first candidate wins
    assert "mom" not in picked
