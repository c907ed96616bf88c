"""Connection parameters, names and answers that need no mount (the mounts themselves
are in tests/integration/test_storage_connections.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from vdsm import errors
from vdsm.storage import connections
from vdsm.storage import constants as sc
from vdsm.storage.connections import StorageConnections, mangle, nfs_options, normalize_path

NFS, FCP, ISCSI, LOCALFS, POSIXFS, GLUSTERFS = 1, 2, 3, 4, 6, 7


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def conns(tmp_path: Path) -> StorageConnections:
    return StorageConnections(tmp_path / "data-center", mount_timeout=5, check_timeout=5)


def test_wire_domain_types_are_the_storage_constants():
    assert (NFS, FCP, ISCSI, LOCALFS, POSIXFS, GLUSTERFS) == (
        sc.NFS_DOMAIN,
        sc.FCP_DOMAIN,
        sc.ISCSI_DOMAIN,
        sc.LOCALFS_DOMAIN,
        sc.POSIXFS_DOMAIN,
        sc.GLUSTERFS_DOMAIN,
    )


@pytest.mark.parametrize(
    ("path", "mangled"),
    [
        ("srv:/exp", "srv:_exp"),
        ("srv:/exp/data", "srv:_exp_data"),
        ("/data/local", "_data_local"),
        ("srv:/my_export", "srv:_my__export"),
        ("/a_/b", "_a___b"),
    ],
)
def test_mangling(path, mangled):
    assert mangle(path) == mangled


def test_mangling_is_not_one_to_one():
    # Upstream's scheme, kept for compatibility: these two share a mount point, so a
    # connect must check what is mounted there (see the integration tests: 477).
    assert mangle("/a_/b") == mangle("/a/_b")


@pytest.mark.parametrize(
    ("spec", "normal"),
    [
        ("srv:/exp", "srv:/exp"),
        ("srv://exp//data/", "srv:/exp/data"),
        ("srv:/exp/../other/.", "srv:/other"),
        ("srv:2049:/exp/", "srv:2049:/exp"),  # a port stays
        ("srv:0049:/exp/", "srv:0049:/exp"),  # not a port: part of the path
        ("[fe80::1]:/exp//x/", "[fe80::1]:/exp/x"),
        ("//data//local/", "/data/local"),
        ("/data/local/.", "/data/local"),
        ("tmpfs", "tmpfs"),
        ("gluster.example.com:volume", "gluster.example.com:volume"),
    ],
)
def test_connection_strings_are_normalized_like_upstream(spec, normal):
    assert normalize_path(spec) == normal


@pytest.mark.parametrize("spec", ["srv:", ":/exp", "[fe80::1/exp"])
def test_unusable_host_paths_are_invalid_parameters(spec):
    with pytest.raises(errors.InvalidParameterException) as info:
        normalize_path(spec)
    assert info.value.code == 1000


# -- NFS options (upstream storageServer.NFSConnection) ------------------------------------


def test_nfs_defaults():
    assert nfs_options() == "soft,nosharecache,timeo=100,retrans=3,nfsvers=3,nolock"


@pytest.mark.parametrize(
    ("version", "options"),
    [
        ("3", "soft,nosharecache,timeo=100,retrans=3,nfsvers=3,nolock"),
        ("4", "soft,nosharecache,timeo=100,retrans=3,nfsvers=4"),
        ("4.1", "soft,nosharecache,timeo=100,retrans=3,nfsvers=4,minorversion=1"),
        ("4.2", "soft,nosharecache,timeo=100,retrans=3,nfsvers=4,minorversion=2"),
        # auto: no version option, and it may end up v3, so local locks
        (None, "soft,nosharecache,timeo=100,retrans=3,nolock"),
    ],
)
def test_nfs_versions(version, options):
    assert nfs_options(version) == options


def test_nfs_timeout_retrans_and_engine_options_come_after_ours():
    assert (
        nfs_options("4.1", 600, 6, "sec=sys,,actimeo=0")
        == "soft,nosharecache,timeo=600,retrans=6,nfsvers=4,minorversion=1,sec=sys,actimeo=0"
    )


@pytest.mark.parametrize("extra", ["lock", "nolock", "rw,nolock"])
def test_nfs3_locking_chosen_by_the_engine_is_kept(extra):
    options = nfs_options("3", extra=extra).split(",")
    assert options.count("nolock") == extra.split(",").count("nolock")
    assert ("lock" in options) == ("lock" in extra.split(","))


@pytest.mark.parametrize("version", ["4.2.1", "x", "4.x", ""])
def test_bad_nfs_versions_are_invalid_parameters(version):
    if version == "":
        # "" means no version given, as None does upstream (falsy)
        assert "nfsvers" not in nfs_options(version)
        return
    with pytest.raises(errors.InvalidParameterException):
        nfs_options(version)


# -- mount points --------------------------------------------------------------------------


def test_mount_points(conns: StorageConnections):
    mnt = conns.repository / "mnt"
    assert conns.mount_point(NFS, "srv:/exp/") == mnt / "srv:_exp"
    assert conns.mount_point(POSIXFS, "/dev/loop3") == mnt / "_dev_loop3"
    assert conns.mount_point(LOCALFS, "/data/my_dir/") == mnt / "_data_my__dir"
    assert conns.mount_point(GLUSTERFS, "g:/vol") == mnt / "glusterSD" / "g:_vol"


def test_repository_is_made_canonical(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    conns = StorageConnections(tmp_path / "link")
    assert conns.mount_point(NFS, "s:/e") == tmp_path / "real" / "mnt" / "s:_e"


@pytest.mark.parametrize(
    ("domain_type", "connection"),
    [
        (NFS, ".."),
        (NFS, "."),
        (POSIXFS, ""),
        (POSIXFS, "x" * 300),
        (LOCALFS, "relative/dir"),
        (FCP, "/dev/sda"),
    ],
)
def test_no_mount_point_escapes_the_mnt_directory(conns, domain_type, connection):
    with pytest.raises(errors.InvalidParameterException):
        conns.mount_point(domain_type, connection)


# -- answers -------------------------------------------------------------------------------


def test_connect_needs_connections(conns: StorageConnections):
    with pytest.raises(errors.InvalidParameterException):
        run(conns.connect(NFS, []))


def test_disconnect_of_nothing_answers_nothing(conns: StorageConnections):
    assert run(conns.disconnect(NFS, [])) == []


def test_fcp_has_nothing_to_connect(conns: StorageConnections):
    params = [{"id": "a"}, {"id": "b"}]
    assert run(conns.connect(FCP, params)) == [{"id": "a", "status": 0}, {"id": "b", "status": 0}]
    assert run(conns.disconnect(FCP, params)) == [
        {"id": "a", "status": 0},
        {"id": "b", "status": 0},
    ]


def test_unsupported_storage_types(conns: StorageConnections):
    with pytest.raises(errors.StorageTypeError) as info:
        run(conns.connect(ISCSI, [{"id": "a", "connection": "10.0.0.1"}]))
    assert info.value.code == 468
    with pytest.raises(errors.InvalidParameterException):
        run(conns.connect(99, [{"id": "a"}]))


def test_each_bad_entry_answers_1000_on_its_own(conns: StorageConnections):
    params: list[Any] = [
        {"id": "no-connection"},
        {"id": "no-path", "connection": "srv:"},
        {"id": "bad-version", "connection": "srv:/e", "protocol_version": "4.2.1"},
        {"id": "bad-timeout", "connection": "srv:/e", "timeout": "soon"},
        {"id": "bad-retrans", "connection": "srv:/e", "retrans": [3]},
        {"id": "escape", "connection": ".."},
        {"connection": "srv:/no-id"},
        "not a dict",
    ]
    statuses = run(conns.connect(NFS, params))
    assert [s["status"] for s in statuses] == [1000] * len(params)
    assert [s["id"] for s in statuses] == [
        "no-connection",
        "no-path",
        "bad-version",
        "bad-timeout",
        "bad-retrans",
        "escape",
        None,
        None,
    ]
    # Nothing was mounted or created for them.
    assert not (conns.repository / "mnt").exists()


def test_localfs_needs_an_absolute_path(conns: StorageConnections):
    statuses = run(conns.connect(LOCALFS, [{"id": "a", "connection": "data/local"}]))
    assert statuses == [{"id": "a", "status": 1000}]


def test_upstream_access_checks():
    checks = {c.users: c for c in connections.UPSTREAM_ACCESS_CHECKS}
    assert checks[()].mode == connections.RWX
    assert checks[("vdsm",)].mode == connections.RWX
    assert checks[("vdsm",)].groups == ("kvm",)
    assert checks[("qemu", "libvirt-qemu")].mode == connections.RX
    assert checks[("qemu", "libvirt-qemu")].groups == ("qemu", "kvm")
