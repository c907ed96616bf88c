"""The lab as pytest fixtures: real libvirtd, sanlock, LVM, loop devices, namespaces, vdsmd.

Fixtures (all clean up after themselves whatever the test's outcome):

  lab_services                  session: starts daemons on demand (tests.lab.services); the
                                last test session to end stops those sessions started
  libvirt_uri                   session: "qemu:///system" served by a running libvirtd
  libvirt_conn                  a libvirt.virConnect on it, per test (a test may restart
                                libvirtd, which closes every open connection)
  libvirt_domain(...)           factory: a transient type='kvm' domain, destroyed afterwards
  shared_tmp_path               a 0755 dir under /var/tmp that qemu (libvirt-qemu) can read
  sanlock                       session: a running sanlock daemon (-w 0 on a host; wdmd +
                                -w 1 with softdog in the kernel lab)
  sanlock_lockspace(...)        factory: a lockspace (io_timeout 1 s) initialized and joined;
                                its registrations closed and the lockspace left afterwards
  loop_device(size)             factory: a sparse file on a loop device, always detached
  lvm_vg(tags=(), size=...)     factory: a VG on its own loop device with its own filter
  netns / netns_factory()       a fresh network namespace with veth0/veth1 inside
  pki                           session: a throw-away TLS PKI (tests.lab.pki)
  vdsmd(config, env)            factory: the daemon as a real process (tests.lab.vdsmd); its
                                log is attached to the report of a test that fails

Markers: a test that uses any of these fixtures, or lives in tests/integration, is marked
`integration` automatically, so the unit phase never touches a real service.  Tests
marked `lab` only run inside the kernel lab (LAB_GUEST=1): on the host they are
deselected, and tests/lab/test_kernel_lab.py runs them in a guest.

Skip reasons: "not root" and "no /dev/kvm" are the only ones tools/run-tests accepts; a
fixture that finds its set-up missing skips with a reason naming it, and that fails the run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.lab import leftovers, services
from tests.lab.pki import PKI
from tests.lab.resources import LoopDevice, NetNS, VolumeGroup, run, unique_name
from tests.lab.vdsmd import Config, VdsmdProcess

IN_GUEST = os.environ.get("LAB_GUEST") == "1"

INTEGRATION_FIXTURES = frozenset(
    {
        "lab_services",
        "libvirt_uri",
        "libvirt_conn",
        "libvirt_domain",
        "sanlock",
        "freezable_mount",
        "sanlock_lockspace",
        "loop_device",
        "lvm_vg",
        "netns",
        "netns_factory",
        "vdsmd",
    }
)

VDSMD_KEY = pytest.StashKey[list[VdsmdProcess]]()
LOG_TAIL_LINES = 300


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("not root")


def require_kvm() -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no /dev/kvm")


def require_command(command: str, package: str) -> None:
    if shutil.which(command) is None:
        pytest.skip(f"{command} is not installed: apt-get install {package} (make deps)")


# --- hooks ------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    # also declared in setup.cfg; repeated so the plugin works with any ini file
    for line in (
        "integration: drives real daemons and system services (libvirtd, sanlock, LVM, netns)",
        "lab: needs a stock kernel; runs inside the kernel lab VM",
        "kernel_lab: boots the kernel lab VM from the host (runs the lab tests there)",
        "slow: takes more than a few seconds",
    ):
        config.addinivalue_line("markers", line)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove what killed sessions left behind (their owner PID is gone)."""
    if os.geteuid() == 0 and not IN_GUEST and not hasattr(session.config, "workerinput"):
        removed = leftovers.sweep()
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for item in removed:
            if reporter is not None:
                reporter.write_line(f"lab: removed a leftover of a dead test session: {item}")


@pytest.hookimpl(tryfirst=True)  # before -m selection sees the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration_dir = Path(str(config.rootpath)) / "tests" / "integration"
    lab_items = []
    keep = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if (
            fixtures & INTEGRATION_FIXTURES or integration_dir in Path(str(item.path)).parents
        ) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("lab") is not None and not IN_GUEST:
            lab_items.append(item)
        else:
            keep.append(item)
    if lab_items:
        config.hook.pytest_deselected(items=lab_items)
        items[:] = keep
        config.stash[_LAB_DESELECTED] = len(lab_items)


_LAB_DESELECTED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    n = config.stash.get(_LAB_DESELECTED, 0)
    if n:
        terminalreporter.write_line(
            f"lab: {n} test(s) marked `lab` deselected on the host: they run inside the "
            f"kernel lab (pytest -m kernel_lab, or tests/lab/run-in-lab "
            f"'python -m pytest -m lab ...')"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for daemon in item.stash.get(VDSMD_KEY, []):
            if daemon.proc is not None:
                report.sections.append(
                    (f"vdsmd pid {daemon.pid} ({daemon.tmp})", daemon.log_text(LOG_TAIL_LINES))
                )
    return report


# --- services -------------------------------------------------------------------------


class LabServices:
    """Starts daemons for this session; at the end of the session, the last session
    using the lab stops the daemons sessions started (tests.lab.services.Session)."""

    def __init__(self) -> None:
        self.session = services.Session()

    @property
    def started(self) -> list[str]:
        return self.session.started

    def ensure(self, *names: str, watchdog: bool = False) -> None:
        require_root()
        try:
            self.session.up(names, watchdog=watchdog)
        except services.ServiceError as e:
            pytest.fail(f"lab services {', '.join(names)} could not start:\n{e}", pytrace=False)

    def close(self) -> None:
        self.session.close()


@pytest.fixture(scope="session")
def lab_services() -> Iterator[LabServices]:
    lab = LabServices()
    yield lab
    lab.close()


@pytest.fixture(scope="session")
def libvirt_uri(lab_services: LabServices) -> str:
    require_root()
    require_command("libvirtd", "libvirt-daemon-system")
    require_command("virsh", "libvirt-clients")
    lab_services.ensure("libvirt")
    for item in leftovers.find():  # domains of killed sessions show once libvirtd runs
        if item.kind == "domain":
            leftovers.remove(item)
    return "qemu:///system"


@pytest.fixture
def libvirt_conn(libvirt_uri: str) -> Iterator[Any]:
    try:
        import libvirt
    except ImportError:
        pytest.skip("python3-libvirt is not installed (make deps)")
    conn = libvirt.open(libvirt_uri)
    yield conn
    conn.close()


@pytest.fixture
def shared_tmp_path() -> Iterator[Path]:
    """A temporary dir other users can traverse: qemu runs as libvirt-qemu."""
    path = Path(tempfile.mkdtemp(prefix=unique_name() + "-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    # Storage a failed test left mounted below it (a daemon's repository) goes first.
    leftovers.unmount(lambda source, target: target.startswith(str(path) + "/"))
    shutil.rmtree(path, ignore_errors=True)


def domain_xml(
    name: str,
    memory_mib: int = 64,
    disk: Path | None = None,
    domain_type: str = "kvm",
    devices: str = "",
) -> str:
    disk_xml = ""
    if disk is not None:
        disk_xml = (
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        )
    return f"""<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    {disk_xml}
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <memballoon model='none'/>
    {devices}
  </devices>
</domain>"""


@pytest.fixture
def libvirt_domain(libvirt_conn: Any) -> Iterator[Callable[..., Any]]:
    """`libvirt_domain(memory_mib=64, disk=None, xml=None)`: a running transient domain
    named vdsmlab-<pid>-<n>; destroyed at teardown."""
    names: list[str] = []

    def create(memory_mib: int = 64, disk: Path | None = None, xml: str | None = None) -> Any:
        require_kvm()
        name = unique_name()
        names.append(name)
        return libvirt_conn.createXML(xml or domain_xml(name, memory_mib, disk), 0)

    yield create
    import libvirt

    for name in names:
        with contextlib.suppress(libvirt.libvirtError):
            libvirt_conn.lookupByName(name).destroy()


@dataclass
class SanlockDaemon:
    pid: int | None
    watchdog: bool
    io_timeout: int = 1


@pytest.fixture(scope="session")
def sanlock(lab_services: LabServices) -> SanlockDaemon:
    require_root()
    require_command("sanlock", "sanlock")
    watchdog = False
    if IN_GUEST:  # the kernel lab has softdog: run sanlock as on a real host
        run(["modprobe", "softdog"], check=False)
        watchdog = os.path.exists("/dev/watchdog")
        if not watchdog:
            pytest.fail("the kernel lab has no /dev/watchdog after modprobe softdog")
        lab_services.ensure("wdmd", "sanlock", watchdog=True)
    else:
        lab_services.ensure("sanlock")
    st = services.status(["sanlock"])[0]
    return SanlockDaemon(st.pid, watchdog)


def supports_direct_io(directory: Path) -> bool:
    probe = directory / ".direct-io-probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    probe.unlink()
    return True


@dataclass
class Lockspace:
    name: str
    host_id: int
    ids: str
    leases: str
    io_timeout: int
    fds: list[int] = field(default_factory=list)
    _next_lease: int = 1

    @property
    def bname(self) -> bytes:
        return self.name.encode()

    def register(self) -> int:
        """A sanlock registration for this process, closed at teardown (which releases
        whatever it still holds, so leaving the lockspace never kills pytest)."""
        import sanlock as sanlock_module

        fd = sanlock_module.register()
        self.fds.append(fd)
        return fd

    def add_resource(self, name: str) -> list[tuple[str, int]]:
        """Initialize a resource lease in the leases area; returns its disks."""
        import sanlock as sanlock_module

        disks = [(self.leases, self._next_lease * 1024 * 1024)]
        self._next_lease += 1
        sanlock_module.write_resource(self.bname, name.encode(), disks)
        return disks


@pytest.fixture
def sanlock_lockspace(
    sanlock: SanlockDaemon,
    tmp_path: Path,
    loop_device: Callable[[int | str], LoopDevice],
) -> Iterator[Callable[..., Lockspace]]:
    """`sanlock_lockspace(host_id=1, io_timeout=1, join=True)`: ids and leases areas on
    files (loop devices where the file system lacks O_DIRECT), written and joined."""
    import sanlock as sanlock_module

    made: list[Lockspace] = []

    def create(host_id: int = 1, io_timeout: int = 1, join: bool = True) -> Lockspace:
        name = unique_name()
        directory = tmp_path / name
        directory.mkdir()
        if supports_direct_io(directory):
            ids, leases = str(directory / "ids"), str(directory / "leases")
            for path, size in ((ids, 1), (leases, 16)):
                with open(path, "wb") as f:
                    f.truncate(size * 1024 * 1024)
        else:
            ids, leases = loop_device("1m").path, loop_device("16m").path
        ls = Lockspace(name, host_id, ids, leases, io_timeout)
        sanlock_module.write_lockspace(ls.bname, ids, iotimeout=io_timeout)
        made.append(ls)
        if join:
            sanlock_module.add_lockspace(ls.bname, host_id, ids, iotimeout=io_timeout)
        return ls

    yield create
    errors = []
    for ls in made:
        for fd in ls.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            if sanlock_module.inq_lockspace(ls.bname, ls.host_id, ls.ids):
                sanlock_module.rem_lockspace(ls.bname, ls.host_id, ls.ids, unused=True)
        except sanlock_module.SanlockException as e:
            errors.append(f"leaving lockspace {ls.name}: {e}")
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


# --- storage and network objects -------------------------------------------------------


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Callable[[int | str], LoopDevice]]:
    """`loop_device(size)`: a sparse file (size in bytes or "64m") on a loop device."""
    require_root()
    made: list[LoopDevice] = []

    def create(size: int | str) -> LoopDevice:
        dev = LoopDevice.create(tmp_path, size)
        made.append(dev)
        return dev

    yield create
    errors = []
    for dev in reversed(made):
        try:
            dev.detach()
        except Exception as e:
            errors.append(str(e))
    if errors:
        pytest.fail("loop devices not detached:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def lvm_vg(loop_device: Callable[[int | str], LoopDevice]) -> Iterator[Callable[..., VolumeGroup]]:
    """`lvm_vg(tags=(), size="1g", name=None)`: a VG with only its own PV in its filter."""
    require_command("lvm", "lvm2")
    made: list[VolumeGroup] = []

    def create(
        tags: tuple[str, ...] | list[str] = (), size: int | str = "1g", name: str | None = None
    ) -> VolumeGroup:
        vg = VolumeGroup.create(loop_device(size), tags=tags, name=name)
        made.append(vg)
        return vg

    yield create
    for vg in reversed(made):
        with contextlib.suppress(Exception):  # the loop device goes anyway
            vg.remove()


@pytest.fixture
def netns_factory() -> Iterator[Callable[..., NetNS]]:
    """`netns_factory(veth=("veth0", "veth1"))`: a fresh namespace (veth=None: empty)."""
    require_root()
    made: list[NetNS] = []

    def create(veth: tuple[str, str] | None = ("veth0", "veth1")) -> NetNS:
        ns = NetNS.create(veth)
        made.append(ns)
        return ns

    yield create
    errors = []
    for ns in made:
        try:
            ns.delete()
        except Exception as e:
            errors.append(str(e))
    if errors:
        pytest.fail("namespaces not deleted:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def netns(netns_factory: Callable[..., NetNS]) -> NetNS:
    return netns_factory()


# --- TLS and the daemon under test --------------------------------------------------


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    require_command("openssl", "openssl")
    return PKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def vdsmd(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    # Requested so that it is torn down after the daemons stop: storage below it is
    # unmounted and deleted only once no daemon uses it.
    shared_tmp_path: Path,
) -> Iterator[Callable[..., VdsmdProcess]]:
    """`vdsmd(config=None, env=None, start=True, netns=None)`: a started VdsmdProcess, its
    files under tmp_path/vdsmdN (N = 0, 1, ... per daemon of the test); with `netns` (a
    namespace name) it runs inside that network namespace.

    `config` is {section: {key: value}} over the test defaults (plain TCP on 127.0.0.1,
    port 0, libvirt test:///default, sanlock io_timeout 1, every dir under its own root).
    At teardown a still-running daemon gets SIGTERM and must exit 0 (SIGKILL after a
    timeout fails the test), and a daemon that died by itself fails the test too; then
    the lockspaces the daemons kept joined (their `ids` below the repository) are left.
    """
    made: list[VdsmdProcess] = []
    request.node.stash[VDSMD_KEY] = made

    def create(
        config: Config | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        start_timeout: float = 30.0,
        netns: str | None = None,
    ) -> VdsmdProcess:
        root = tmp_path / f"vdsmd{len(made)}"
        root.mkdir()
        daemon = VdsmdProcess(root, config, env, start_timeout, netns=netns)
        made.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield create
    problems = []
    for daemon in made:
        if daemon.proc is None:
            continue
        if daemon.running():
            rc = daemon.stop()
            if daemon.killed:
                problems.append(
                    f"vdsmd pid {daemon.pid} ignored SIGTERM for "
                    f"{daemon.stop_timeout} s and was killed"
                )
            elif rc != 0:
                problems.append(f"vdsmd pid {daemon.pid} exited with {rc} on SIGTERM")
        elif not daemon.stopped_by_test:
            problems.append(
                f"vdsmd pid {daemon.pid} died during the test "
                f"(exit status {daemon.proc.returncode})"
            )
    for daemon in made:
        if daemon.proc is not None:
            leftovers.leave_lockspaces(daemon.config["irs"]["repository"])
    if problems:
        text = "\n".join(problems)
        logs = "\n".join(d.log_text(60) for d in made if d.proc is not None)
        pytest.fail(f"{text}\n{logs}", pytrace=False)
