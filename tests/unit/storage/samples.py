"""Upstream's domain metadata samples shared by the storage unit tests (contract §4.2)."""

# A V5 NFS domain as upstream writes it, and its seal.
V5_NFS = {
    "ALIGNMENT": "1048576",
    "BLOCK_SIZE": "512",
    "CLASS": "Data",
    "DESCRIPTION": "nfs-data",
    "IOOPTIMEOUTSEC": "10",
    "LEASERETRIES": "3",
    "LEASETIMESEC": "60",
    "LOCKPOLICY": "",
    "LOCKRENEWALINTERVALSEC": "5",
    "POOL_UUID": "",
    "REMOTE_PATH": "nfs.example.com:/export/data",
    "ROLE": "Regular",
    "SDUUID": "8f7a4c1e-2b3d-4e5f-9a0b-1c2d3e4f5a6b",
    "TYPE": "NFS",
    "VERSION": "5",
}
V5_NFS_CKSUM = "70d6a7349e428395162b02468816818729f93dfb"
