import pytest

from tests.support.storage import upstream_checksum
from tests.unit.storage.samples import V5_NFS, V5_NFS_CKSUM
from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import metadata
from vdsm.storage import sdmetadata as sdm
from vdsm.storage.sdmetadata import DomainMetadata

SD = "8f7a4c1e-2b3d-4e5f-9a0b-1c2d3e4f5a6b"
SD2 = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
SP = "5849b030-626e-47cb-ad90-3ce782d831b3"
SP2 = "6a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def v5_nfs():
    return sdm.new_file_domain(
        SD, sc.NFS_DOMAIN, sc.DATA_DOMAIN, "nfs-data", "nfs.example.com:/export/data", 5
    )


def test_new_v5_nfs_domain_is_the_contract_example():
    values = v5_nfs()
    assert values == V5_NFS
    assert upstream_checksum(values) == V5_NFS_CKSUM
    assert metadata.checksum(values) == V5_NFS_CKSUM


@pytest.mark.parametrize("version", [3, 4])
def test_v3_and_v4_file_domains_lack_only_alignment_and_block_size(version):
    values = sdm.new_file_domain(
        SD, "NFS", "Data", "nfs-data", "nfs.example.com:/export/data", version
    )
    expected = dict(V5_NFS, VERSION=str(version))
    del expected["ALIGNMENT"], expected["BLOCK_SIZE"]
    assert values == expected


def test_v5_4k_domain_carries_its_geometry():
    alignment = sc.alignment_for(sc.BLOCK_SIZE_4K, 2000)
    values = sdm.new_file_domain(SD, 6, 1, "posix", "/srv/x", 5, sc.BLOCK_SIZE_4K, alignment)
    assert values["ALIGNMENT"] == str(8 * sc.MiB)
    assert values["BLOCK_SIZE"] == "4096"
    assert values["TYPE"] == "POSIXFS"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"version": 2}, errors.InvalidParameterException),
        ({"version": 4, "block_size": 4096}, errors.InvalidParameterException),
        ({"domain_type": sc.ISCSI_DOMAIN}, errors.InvalidParameterException),
        ({"domain_type": 42}, errors.InvalidParameterException),
        ({"domain_class": 9}, errors.InvalidParameterException),
        ({"description": "x" * 51}, errors.StorageDomainDescriptionTooLongError),
        ({"description": "two\nlines"}, errors.InvalidParameterException),
        ({"remote_path": "a\rb"}, errors.InvalidParameterException),
        ({"alignment": 3 * sc.MiB}, errors.InvalidParameterException),
    ],
)
def test_new_file_domain_refuses(kwargs, error):
    args = {
        "sd_uuid": SD,
        "domain_type": sc.NFS_DOMAIN,
        "domain_class": sc.DATA_DOMAIN,
        "description": "d",
        "remote_path": "srv:/e",
        "version": 5,
    }
    args.update(kwargs)
    with pytest.raises(error):
        sdm.new_file_domain(**args)


def test_description_of_50_characters_is_fine_and_unicode_counts_characters():
    sdm.new_file_domain(SD, 1, 1, "é" * 50, "srv:/e", 5)
    with pytest.raises(errors.StorageDomainDescriptionTooLongError) as info:
        sdm.with_description(v5_nfs(), "é" * 51)
    assert info.value.code == 387


def test_view_of_a_v5_domain():
    view = DomainMetadata(v5_nfs())
    assert view.sd_uuid == SD
    assert view.version == 5
    assert view.domain_type == "NFS" and view.domain_type_code == 1
    assert view.domain_class == "Data" and view.domain_class_code == 1
    assert view.description == "nfs-data"
    assert view.role == "Regular" and not view.is_master
    assert view.pool_uuids == []
    assert view.remote_path == "nfs.example.com:/export/data"
    assert (view.block_size, view.alignment) == (512, sc.MiB)
    assert view.supports_xleases
    assert view.lease_params == {
        "LOCKRENEWALINTERVALSEC": 5,
        "LEASETIMESEC": 60,
        "IOOPTIMEOUTSEC": 10,
        "LEASERETRIES": 3,
    }
    assert view.master_version is None and view.pool_domains is None


def test_view_defaults_for_v3():
    values = sdm.new_file_domain(SD, 4, 2, "iso", "/data/iso", 3)
    view = DomainMetadata(values)
    assert (view.block_size, view.alignment) == (512, sc.MiB)
    assert not view.supports_xleases
    assert view.domain_class == "Iso"


def test_view_reads_v0_and_v2_but_not_unknown_versions():
    for version in ("0", "2"):
        assert DomainMetadata(dict(V5_NFS, VERSION=version, ALIGNMENT=str(sc.MiB))).version == int(
            version
        )
    with pytest.raises(errors.MetaDataValidationError) as info:
        DomainMetadata(dict(V5_NFS, VERSION="7"))
    assert info.value.code == 753


def test_v4_with_a_foreign_geometry_is_refused():
    with pytest.raises(errors.MetaDataValidationError):
        DomainMetadata(dict(V5_NFS, VERSION="4", ALIGNMENT=str(2 * sc.MiB)))


@pytest.mark.parametrize("key", ["VERSION", "SDUUID", "TYPE", "CLASS", "ROLE", "DESCRIPTION"])
def test_missing_required_key_is_751(key):
    values = dict(V5_NFS)
    del values[key]
    with pytest.raises(errors.InvalidMetadata) as info:
        DomainMetadata(values)
    assert info.value.code == 751


@pytest.mark.parametrize("key, value", [("TYPE", "ZFS"), ("CLASS", "data"), ("VERSION", "five")])
def test_bad_values_are_753(key, value):
    with pytest.raises(errors.MetaDataValidationError):
        DomainMetadata(dict(V5_NFS, **{key: value}))


def test_unreadable_lease_params_fall_back_to_defaults():
    view = DomainMetadata(dict(V5_NFS, LEASETIMESEC="", LEASERETRIES="x"))
    assert view.lease_params["LEASETIMESEC"] == 60
    assert view.lease_params["LEASERETRIES"] == 3


def test_old_blank_pool_uuid_means_no_pool():
    view = DomainMetadata(dict(V5_NFS, POOL_UUID=f"{sc.BLANK_UUID}"))
    assert view.pool_uuids == []
    view = DomainMetadata(dict(V5_NFS, POOL_UUID=f"{SP},{SP2}"))
    assert view.pool_uuids == [SP, SP2]


def test_attach_and_detach():
    attached = sdm.with_pool(v5_nfs(), SP)
    assert attached["POOL_UUID"] == SP
    assert sdm.with_pool(attached, SP) == attached
    with pytest.raises(errors.StorageDomainAlreadyAttached) as info:
        sdm.with_pool(attached, SP2)
    assert info.value.code == 380
    detached = sdm.without_pool(sdm.with_role(attached, "Master"), SP)
    assert detached["POOL_UUID"] == "" and detached["ROLE"] == "Regular"
    # Detaching from a pool the domain is not in changes nothing, role included.
    master = sdm.with_role(attached, "Master")
    assert sdm.without_pool(master, SP2) == master


def test_an_iso_domain_may_serve_several_pools():
    iso = sdm.new_file_domain(SD, 1, sc.ISO_DOMAIN, "iso", "srv:/iso", 5)
    both = sdm.with_pool(sdm.with_pool(iso, SP), SP2)
    assert DomainMetadata(both).pool_uuids == [SP, SP2]
    assert DomainMetadata(sdm.without_pool(both, SP)).pool_uuids == [SP2]


def test_pool_create_writes_upstreams_master_keys():
    leases = sdm.lease_keys(5, 60, 10, 3)
    master = {
        **sdm.as_master(v5_nfs(), SP, leases),
        **sdm.pool_keys("dc1", SD, 1),
    }
    assert master == dict(
        V5_NFS,
        POOL_UUID=SP,
        ROLE="Master",
        POOL_SPM_ID="-1",
        POOL_SPM_LVER="-1",
        MASTER_VERSION="1",
        POOL_DESCRIPTION="dc1",
        POOL_DOMAINS=f"{SD}:Active",
    )
    view = DomainMetadata(master)
    assert view.is_master
    assert view.master_version == 1
    assert view.pool_description == "dc1"
    assert view.pool_domains == {SD: "Active"}
    assert (view.pool_spm_id, view.pool_spm_lver) == (-1, -1)
    data = metadata.serialize(master)
    assert data.endswith(f"_SHA_CKSUM={upstream_checksum(master)}\n".encode())


def test_zero_lease_params_fall_back_to_defaults_with_lockpolicy_on():
    assert sdm.lease_keys(0, 60, 10, 3) == {
        "LOCKRENEWALINTERVALSEC": "5",
        "LEASETIMESEC": "60",
        "IOOPTIMEOUTSEC": "10",
        "LEASERETRIES": "3",
        "LOCKPOLICY": "ON",
    }


def test_a_domain_of_another_pool_cannot_become_master():
    with pytest.raises(errors.StorageDomainAlreadyAttached):
        sdm.as_master(sdm.with_pool(v5_nfs(), SP2), SP, {})


def test_pool_description_limit_is_327():
    with pytest.raises(errors.StoragePoolDescriptionTooLongError) as info:
        sdm.pool_keys("x" * 51, SD, 1)
    assert info.value.code == 327


def test_domain_map_updates_keep_order_and_words():
    master = {**v5_nfs(), **sdm.pool_keys("dc1", SD, 1)}
    master = sdm.with_domain_status(master, SD2, "attached")
    assert master["POOL_DOMAINS"] == f"{SD}:Active,{SD2}:Attached"
    master = sdm.with_domain_status(master, SD2, "Active")
    assert master["POOL_DOMAINS"] == f"{SD}:Active,{SD2}:Active"
    master = sdm.with_domain_status(master, SD2, "Inactive")
    assert master["POOL_DOMAINS"] == f"{SD}:Active,{SD2}:Attached"
    assert sdm.without_domain(master, SD)["POOL_DOMAINS"] == f"{SD2}:Attached"
    with pytest.raises(errors.StorageDomainStatusError) as info:
        sdm.with_domain_status(master, SD2, "Gone")
    assert info.value.code == 376


def test_domain_map_reads_legacy_spellings():
    raw = f"{SD}:active,'{SD2}':'Inactive'"
    assert sdm.decode_domains(raw) == {SD: "Active", SD2: "Attached"}
    with pytest.raises(errors.MetaDataValidationError):
        sdm.decode_domains("no-colon")


def test_master_demotion_and_versions():
    master = {**sdm.as_master(v5_nfs(), SP, {}), **sdm.pool_keys("dc", SD, 3)}
    assert sdm.with_master_version(master, 4)["MASTER_VERSION"] == "4"
    old = sdm.demoted(master)
    assert old["MASTER_VERSION"] == "0" and old["ROLE"] == "Regular"
    spm = sdm.with_spm_status(master, lver=7, spm_id=2)
    assert (spm["POOL_SPM_LVER"], spm["POOL_SPM_ID"]) == ("7", "2")


def test_upgrade_v4_to_v5():
    v4 = dict(sdm.new_file_domain(SD, 1, 1, "d", "srv:/e", 4), LOGBLKSIZE="512", PHYBLKSIZE="512")
    v5 = sdm.upgraded_to_v5(v4)
    assert v5["VERSION"] == "5" and v5["BLOCK_SIZE"] == "512" and v5["ALIGNMENT"] == "1048576"
    assert "LOGBLKSIZE" not in v5 and "PHYBLKSIZE" not in v5
    with pytest.raises(errors.MetaDataValidationError):
        sdm.upgraded_to_v5(v5)


def test_wire_enums():
    assert [sc.domain_type_name(i) for i in range(1, 8)] == [
        "NFS",
        "FCP",
        "ISCSI",
        "LOCALFS",
        "CIFS",
        "POSIXFS",
        "GLUSTERFS",
    ]
    assert sc.domain_type_name("localfs") == "LOCALFS" and sc.domain_type_name("6") == "POSIXFS"
    assert sc.domain_type_code("GLUSTERFS") == 7
    assert [sc.domain_class_name(i) for i in (1, 2, 3)] == ["Data", "Iso", "Backup"]
    assert sc.domain_class_code("Backup") == 3
    with pytest.raises(errors.InvalidParameterException):
        sc.domain_type_name(8)
    assert sc.is_file_type(4) and not sc.is_file_type(3)


@pytest.mark.parametrize(
    "block_size, hosts, alignment",
    [
        (512, 2000, 1),
        (4096, 250, 1),
        (4096, 251, 2),
        (4096, 500, 2),
        (4096, 1000, 4),
        (4096, 2000, 8),
    ],
)
def test_alignment_for(block_size, hosts, alignment):
    assert sc.alignment_for(block_size, hosts) == alignment * sc.MiB


def test_alignment_for_refuses_bad_input():
    with pytest.raises(errors.InvalidParameterException):
        sc.alignment_for(512, 2001)
    with pytest.raises(errors.InvalidParameterException):
        sc.alignment_for(1024, 10)
