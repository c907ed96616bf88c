"""Helpers for storage tests: a JSON-RPC caller, task polling, and an INDEPENDENT reader
of upstream's on-disk formats (written from the contract, sharing no code with vdsm)."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

from tests.support.rawstomp import RawStomp

BLANK = "00000000-0000-0000-0000-000000000000"


class CallFailed(Exception):
    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: ({code}) {message}")
        self.code = code
        self.message = message


class Vdsm:
    """Calls verbs on a daemon; raises CallFailed with the error code."""

    def __init__(self, daemon: Any, timeout: float = 120.0) -> None:
        self.conn = RawStomp(daemon.host, daemon.port, timeout=timeout)
        self.conn.connect()
        self.timeout = timeout

    def call(self, method: str, **params: Any) -> Any:
        answer = self.conn.call(method, params, timeout=self.timeout)
        if "error" in answer:
            raise CallFailed(method, answer["error"]["code"], answer["error"]["message"])
        return answer["result"]

    def code(self, method: str, **params: Any) -> int:
        """The error code a call answers (0 for success)."""
        try:
            self.call(method, **params)
        except CallFailed as e:
            return e.code
        return 0

    def wait_task(self, task_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("Task.getStatus", taskID=task_id)
            if status["taskState"] == "finished":
                return status
            assert time.monotonic() < deadline, f"task {task_id} still {status}"
            time.sleep(0.2)

    def close(self) -> None:
        self.conn.close()


# The keys of a file domain's metadata as upstream writes them, before the pool's.
FILE_DOMAIN_KEYS = {
    "CLASS",
    "DESCRIPTION",
    "IOOPTIMEOUTSEC",
    "LEASERETRIES",
    "LEASETIMESEC",
    "LOCKPOLICY",
    "LOCKRENEWALINTERVALSEC",
    "POOL_UUID",
    "REMOTE_PATH",
    "ROLE",
    "SDUUID",
    "TYPE",
    "VERSION",
}
V5_FILE_DOMAIN_KEYS = FILE_DOMAIN_KEYS | {"ALIGNMENT", "BLOCK_SIZE"}
POOL_KEYS = {"MASTER_VERSION", "POOL_DESCRIPTION", "POOL_DOMAINS", "POOL_SPM_ID", "POOL_SPM_LVER"}


def new_uuid() -> str:
    return str(uuid.uuid4())


class Site:
    """A daemon whose repository and LOCALFS domains live under one traversable dir."""

    def __init__(
        self,
        vdsmd: Any,
        root: Path,
        *,
        process_pool_timeout: str | None = None,
        watchdog_interval: str | None = None,
        extra: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.root = root
        self.repo = root / "data-center"
        irs = {"repository": str(self.repo), "sd_health_check_delay": "1"}
        if process_pool_timeout:
            irs["process_pool_timeout"] = process_pool_timeout
        config = {"irs": irs, "sanlock": {"io_timeout": "1"}}
        if watchdog_interval:
            config["spm"] = {"watchdog_interval": watchdog_interval}
        for section, values in (extra or {}).items():
            config.setdefault(section, {}).update(values)
        self.daemon = vdsmd(config)
        self.vdsm = Vdsm(self.daemon)
        self.sp = new_uuid()

    def reconnect(self) -> None:
        """After a restart: a new client connection."""
        self.vdsm.close()
        self.vdsm = Vdsm(self.daemon)

    def local(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(mode=0o755)
        return path

    def connect_dirs(self, *dirs: Path) -> None:
        params = [{"id": new_uuid(), "connection": str(d)} for d in dirs]
        statuses = self.vdsm.call(
            "StoragePool.connectStorageServer",
            storagepoolID=BLANK,
            domainType=4,
            connectionParams=params,
        )
        assert all(s["status"] == 0 for s in statuses), statuses

    def create_domain(
        self,
        sd: str,
        path: Path,
        *,
        version: int = 5,
        domain_class: int = 1,
        name: str | None = None,
    ) -> None:
        """A LOCALFS domain; domain_class 1 data, 2 ISO, 3 backup (export)."""
        self.vdsm.call(
            "StorageDomain.create",
            storagedomainID=sd,
            domainType=4,
            typeArgs=str(path),
            name=name if name is not None else sd[:8],
            domainClass=domain_class,
            version=version,
        )

    def new_domain(self, name: str, path: Path | None = None) -> tuple[str, Path]:
        """A V5 LOCALFS domain on a new directory (or `path`), connected; (uuid, dir)."""
        directory = path if path is not None else self.local(name)
        self.connect_dirs(directory)
        sd = new_uuid()
        self.create_domain(sd, directory)
        return sd, directory

    def new_pool(self, master: str) -> None:
        """Creates the pool on `master` and connects this host to it."""
        self.create_pool(master)
        self.connect_pool(master)

    def create_pool(self, master: str) -> None:
        self.vdsm.call(
            "StoragePool.create",
            storagepoolID=self.sp,
            name="pool",
            masterSdUUID=master,
            masterVersion=1,
            domainList=[master],
            lockRenewalIntervalSec=5,
            leaseTimeSec=60,
            ioOpTimeoutSec=10,
            leaseRetries=3,
        )

    def connect_pool(
        self, master: str, *, host_id: int = 1, domain_dict: dict[str, str] | None = None
    ) -> None:
        """StoragePool.connect; with domain_dict the pool's domains come from the engine
        ({sd: "active"|"attached"}), without it from the master's metadata."""
        params: dict[str, Any] = {}
        if domain_dict is not None:
            params["domainDict"] = domain_dict
        self.vdsm.call(
            "StoragePool.connect",
            storagepoolID=self.sp,
            hostID=host_id,
            scsiKey="",
            masterSdUUID=master,
            masterVersion=1,
            **params,
        )

    def start_spm(self) -> dict:
        task = self.vdsm.call(
            "StoragePool.spmStart",
            storagepoolID=self.sp,
            prevID=-1,
            prevLver="-1",
            enableScsiFencing="false",
        )
        status = self.vdsm.wait_task(task)
        assert status["taskResult"] == "success", status
        self.vdsm.call("Task.clear", taskID=task)
        spm = self.vdsm.call("StoragePool.getSpmStatus", storagepoolID=self.sp)
        assert spm["spmStatus"] == "SPM"
        return spm

    def spm_with_second_domain(self, second: Path) -> tuple[str, str, Path]:
        """This host SPM of a pool on a new master domain, a domain on `second` attached
        to it; (master uuid, second uuid, master dir)."""
        master, other = new_uuid(), new_uuid()
        d_master = self.local("master")
        self.connect_dirs(d_master, second)
        self.create_domain(master, d_master)
        self.create_domain(other, second)
        self.new_pool(master)
        self.start_spm()
        self.vdsm.call("StorageDomain.attach", storagedomainID=other, storagepoolID=self.sp)
        return master, other, d_master

    def restart(self) -> None:
        from tests.integration.conftest import wait_until_ready

        self.daemon.start()
        wait_until_ready(self.daemon)
        self.reconnect()

    def teardown(self) -> None:
        try:
            self.vdsm.call("StoragePool.spmStop", storagepoolID=self.sp)
            self.vdsm.call("StoragePool.disconnect", storagepoolID=self.sp, hostID=1, scsiKey="")
        except CallFailed:
            pass
        self.vdsm.close()


# -- the independent reader ----------------------------------------------------------------


def read_domain_metadata(path: Path) -> tuple[list[str], dict[str, str], str | None]:
    """(lines in file order, values, checksum) of a dom_md/metadata file."""
    text = path.read_bytes().rstrip(b"\0").decode("utf-8")
    assert text.endswith("\n"), "every line ends with a newline"
    lines = text.splitlines()
    values: dict[str, str] = {}
    checksum = None
    for line in lines:
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {line!r}"
        if key == "_SHA_CKSUM":
            checksum = value
        else:
            values[key] = value
    return lines, values, checksum


def upstream_checksum(values: dict[str, str]) -> str:
    """SHA-1 of the sorted KEY=VALUE strings, no separator, non-ASCII as &#N; (contract §4.2)."""
    digest = hashlib.sha1()
    for key in sorted(values):
        line = f"{key}={values[key]}"
        digest.update("".join(c if ord(c) < 128 else f"&#{ord(c)};" for c in line).encode("ascii"))
    return digest.hexdigest()


def check_metadata_file(path: Path) -> dict[str, str]:
    """Asserts the file is in upstream's format; answers its values."""
    lines, values, checksum = read_domain_metadata(path)
    body = [line for line in lines if not line.startswith("_SHA_CKSUM=")]
    assert body == sorted(body, key=lambda line: line.partition("=")[0]), "sorted by key"
    assert lines[-1].startswith("_SHA_CKSUM="), "checksum is the last line"
    assert checksum == upstream_checksum(values)
    return values


XLEASES_MAGIC = 0x12152016


def read_xleases_header(path: Path, alignment: int) -> dict[str, Any]:
    """The xleases index header (contract §4.5), parsed by hand."""
    with open(path, "rb") as f:
        f.seek(alignment)  # slot 1: the index
        header = f.read(512)
    magic = int.from_bytes(header[0:4], "big")
    return {
        "magic": magic,
        "version": header[5:9].decode(),
        "lockspace": header[10:58].rstrip(b"\0").decode(),
        "mtime": header[59:69].decode(),
        "flag": header[70:71].decode(),
        "tail": header[511:512],
    }
