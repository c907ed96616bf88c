"""DomainLock against the real sanlock daemon (io_timeout 1), with a second sanlock daemon
standing for another host (tests.support.sanlock_faults.PeerHost).

One domain lock is formatted and joined per module (host id 1 here, host id 2 by the
peer, in parallel: ~3 s); tests leave the SDM lease free and the peer joined.
"""

from __future__ import annotations

import errno
import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.fixtures import SanlockDaemon
from tests.support.sanlock_faults import LabDomain, lab_domain, make_areas
from vdsm import errors
from vdsm.storage.clusterlock import DomainLock, SdmInquiry
from vdsm.system.sanlock import HostInfo, SanlockError

pytestmark = pytest.mark.integration

EEXIST = 17
SANLK_ACQUIRE_IDLIVE = -243  # "Lease is held by another host"

# A process of some host: try to take the SDM lease, say what happened.
TRY_ACQUIRE = """
t0 = asyncio.get_running_loop().time()
try:
    lver = await lock.acquire_sdm()
except errors.AcquireLockFailure as e:
    print("refused", e.code, e.args[1], round(asyncio.get_running_loop().time() - t0, 2))
else:
    print("acquired", lver)
"""


@pytest.fixture(scope="module")
def domain(sanlock: SanlockDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabDomain]:
    with lab_domain(tmp_path_factory.mktemp("domainlock")) as d:
        yield d
    print(f"\nleave (rem_lockspace, io_timeout 1): {d.leave_seconds:.2f} s")
    assert d.leave_seconds < 10


def lver_on_storage(domain: LabDomain) -> int:
    info = domain.run(
        domain.sanlock.read_resource(
            domain.name, domain.leases, domain.alignment, align=domain.alignment, sector=512
        )
    )
    assert (info.lockspace, info.resource) == (domain.name, "SDM")
    return info.version


def peer_host(domain: LabDomain) -> HostInfo:
    """The peer as this host's daemon sees it (EAGAIN until it checked delta leases)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return domain.run(domain.sanlock.get_hosts(domain.name, LabDomain.PEER_HOST_ID))[0]
        except SanlockError as e:
            if e.errno != errno.EAGAIN or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_join_goes_from_joining_to_joined(domain: LabDomain) -> None:
    lock = domain.lock
    states = [state for _, state in domain.join_states]
    print(f"\njoin states {domain.join_states}; joined in {domain.join_seconds:.2f} s")
    assert states == [None, True]
    assert domain.join_seconds < 10
    assert domain.run(lock.joined(LabDomain.HOST_ID)) is True
    assert domain.run(lock.joined(3)) is False  # not our host id
    domain.run(lock.wait_joined(LabDomain.HOST_ID, timeout=1))
    domain.run(lock.join(LabDomain.HOST_ID))  # joined already: fine
    # no status until the daemon has checked the delta leases once after joining
    deadline = time.monotonic() + 5
    while domain.run(lock.host_status(LabDomain.HOST_ID)) == "unavailable":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert domain.run(lock.host_status(LabDomain.HOST_ID)) == "live"
    # the peer is seen renewing once this host checked its delta lease twice
    assert domain.run(lock.host_status(LabDomain.PEER_HOST_ID)) in ("unknown", "live")
    assert domain.run(lock.host_status(17)) == "free"


def test_sdm_lifecycle(domain: LabDomain) -> None:
    lock = domain.lock
    before = lver_on_storage(domain)

    t0 = time.monotonic()
    lver = domain.run(lock.acquire_sdm())
    acquired = time.monotonic() - t0
    assert lver == before + 1
    assert domain.run(lock.sdm_owner()) == (lver, LabDomain.HOST_ID)
    assert domain.run(lock.inquire_sdm()) == SdmInquiry(True, lver, (lock.sdm_disk,))

    t0 = time.monotonic()
    domain.run(lock.release_sdm())
    released = time.monotonic() - t0
    print(f"\nacquire SDM {acquired * 1000:.1f} ms, release {released * 1000:.1f} ms")
    assert domain.run(lock.inquire_sdm()) == SdmInquiry(False)
    # A clean release leaves no owner record: upstream's getSpmStatus then answers
    # (-1, -1), though the lver stays on storage and the next holder gets lver + 1.
    assert domain.run(lock.sdm_owner()) == (-1, -1)
    assert lver_on_storage(domain) == lver

    assert domain.run(lock.acquire_sdm()) == lver + 1
    domain.run(lock.release_sdm())
    with pytest.raises(errors.StorageError, match="Cannot release SDM"):
        domain.run(lock.release_sdm())  # not held


def test_another_process_of_this_host_cannot_take_the_held_lease(domain: LabDomain) -> None:
    lver = domain.run(domain.lock.acquire_sdm())
    try:
        proc = domain.local_python(TRY_ACQUIRE)
        assert proc.returncode == 0, proc.stderr
        # sanlock knows the lease is held on this host and refuses at once
        assert proc.stdout.split()[:3] == ["refused", "651", str(EEXIST)], proc.stdout
    finally:
        domain.run(domain.lock.release_sdm())
    assert lver_on_storage(domain) == lver


def test_another_host_cannot_take_the_held_lease(domain: LabDomain) -> None:
    lver = domain.run(domain.lock.acquire_sdm())
    try:
        proc = domain.peer_python(TRY_ACQUIRE)
        assert proc.returncode == 0, proc.stderr
        # the other host's sanlock sees our delta lease renewed: owner alive
        words = proc.stdout.split()
        assert words[:3] == ["refused", "651", str(SANLK_ACQUIRE_IDLIVE)], proc.stdout
        print(f"\nanother host refused after {words[3]} s")
    finally:
        domain.run(domain.lock.release_sdm())
    assert lver_on_storage(domain) == lver


def test_lease_held_by_another_host(domain: LabDomain) -> None:
    lock = domain.lock
    holder = domain.peer.hold(domain.name, "SDM", *lock.sdm_disk)
    lver = lver_on_storage(domain)
    assert domain.run(lock.sdm_owner()) == (lver, LabDomain.PEER_HOST_ID)
    with pytest.raises(errors.AcquireLockFailure) as raised:
        domain.run(lock.acquire_sdm())
    assert raised.value.args[1] == SANLK_ACQUIRE_IDLIVE
    holder.kill()
    holder.wait()
    deadline = time.monotonic() + 5  # the peer's daemon releases the dead holder's lease
    while domain.run(lock.sdm_owner()) != (-1, -1):
        assert time.monotonic() < deadline, "the lease of a dead holder was not released"
        time.sleep(0.1)


def test_holder_killed_when_its_lockspace_is_removed(domain: LabDomain) -> None:
    """`rem_lockspace` (without unused) by another process takes the lockspace away:
    sanlock SIGKILLs the processes holding leases in it at once (after a renewal
    failure it would SIGTERM them first, for its grace period), so the holder's own
    watchdog never gets to see the loss."""
    holder = domain.peer.popen_python(
        domain.script(
            "print('acquired', await lock.acquire_sdm(), flush=True)\nawait asyncio.sleep(3600)"
        )
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().startswith("acquired"), holder.stderr
    assert domain.run(domain.lock.sdm_owner())[1] == LabDomain.PEER_HOST_ID
    peer_lockspace = f"{domain.name}:{LabDomain.PEER_HOST_ID}:{domain.ids}:0"
    proc = domain.peer.client("rem_lockspace", "-s", peer_lockspace)
    assert proc.returncode == 0, proc.stdout
    assert holder.wait(timeout=30) == -9  # SIGKILL
    # Killed with its lockspace going away, the holder's lease record stays on storage,
    # but its host id is free: the lease is free, its lver kept.
    lver = lver_on_storage(domain)
    deadline = time.monotonic() + 5  # until this host's daemon rereads the delta leases
    while domain.run(domain.lock.host_status(LabDomain.PEER_HOST_ID)) != "free":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert domain.run(domain.lock.sdm_owner()) == (lver, -1)
    assert domain.run(domain.lock.acquire_sdm()) == lver + 1
    domain.run(domain.lock.release_sdm())
    rejoin = domain.peer.start_join(domain.name, LabDomain.PEER_HOST_ID, domain.ids)
    assert rejoin.wait(timeout=60) == 0


def test_failover_after_the_spm_host_crashed(domain: LabDomain) -> None:
    """The SPM host's sanlock dies (the host crashes): its vdsm finds its registration
    closed while holding the lease (fatal); when the host is back with a new generation
    of its host id, the old owner record is stale and this host takes over at once.
    Another process of the crashed host, registered but holding nothing, registers
    again by itself on its next call."""
    lock = domain.lock
    idle = domain.peer.popen_python(
        domain.script(
            """
            await sanlock.register()
            print("registered", flush=True)
            sys.stdin.readline()
            lver = await lock.acquire_sdm()
            print("acquired", lver, flush=True)
            await lock.release_sdm()
            """
        )
    )
    assert idle.stdout is not None and idle.stdin is not None
    assert idle.stdout.readline() == "registered\n", idle.stderr
    spm = domain.peer.popen_python(
        domain.script(
            """
            lver = await lock.acquire_sdm()
            print("acquired", lver, flush=True)
            watchdog = LeaseWatchdog(lock, lver, 0.2, lambda why: print("lost:", why))
            await watchdog.run()
            """
        )
    )
    assert spm.stdout is not None
    line = spm.stdout.readline()
    assert line.startswith("acquired"), (line, spm.stderr)
    lver = int(line.split()[1])
    assert domain.run(lock.sdm_owner()) == (lver, LabDomain.PEER_HOST_ID)

    generation = peer_host(domain).generation
    domain.peer.crash()
    ready, _, _ = select.select([spm.stdout], [], [], 5)
    assert ready, "the SPM's watchdog did not notice its sanlock died"
    lost = spm.stdout.readline()
    assert lost.startswith("lost: sanlock registration closed while holding"), lost
    assert f"{domain.name}:SDM" in lost
    assert spm.wait(timeout=5) == 0

    # The host comes back: same sanlock host name, so its host id is reacquired at
    # once, with the next generation; the owner record of the lease is of the old one.
    t0 = time.monotonic()
    domain.peer.start()
    assert domain.peer.start_join(domain.name, LabDomain.PEER_HOST_ID, domain.ids).wait(60) == 0
    deadline = time.monotonic() + 10
    while True:  # this host's daemon sees the new generation at its next renewal
        host = peer_host(domain)
        if host.generation == generation + 1:
            break
        assert time.monotonic() < deadline, host
        time.sleep(0.2)
    print(
        f"\nthe crashed host was back with its next generation after {time.monotonic() - t0:.1f} s"
    )
    assert domain.run(lock.sdm_owner()) == (lver, -1)

    t0 = time.monotonic()
    assert domain.run(lock.acquire_sdm()) == lver + 1
    took_over = time.monotonic() - t0
    print(f"took the stale lease over in {took_over * 1000:.0f} ms")
    assert took_over < 2
    domain.run(lock.release_sdm())

    out, err = idle.communicate("go\n", timeout=30)
    assert out.split() == ["acquired", str(lver + 2)], (out, err)
    assert "sanlock registration was closed" in err and "registering again" in err


def test_leave_refused_while_a_lease_is_held(domain: LabDomain) -> None:
    domain.run(domain.lock.acquire_sdm())
    try:
        with pytest.raises(errors.ReleaseHostIdFailure):
            domain.run(domain.lock.leave(LabDomain.HOST_ID, unused=True))
        assert domain.run(domain.lock.joined(LabDomain.HOST_ID)) is True
    finally:
        domain.run(domain.lock.release_sdm())


def test_a_lockspace_not_joined(domain: LabDomain, tmp_path: Path) -> None:
    ids, leases, loops = make_areas(tmp_path, domain.alignment)
    assert not loops, "integration tests run on a file system with O_DIRECT"
    other = DomainLock(
        domain.sanlock,
        domain.name + "-x",
        Path(ids),
        Path(leases),
        alignment=domain.alignment,
        block_size=512,
        io_timeout=1,
    )
    domain.run(other.format())
    assert domain.run(other.joined(LabDomain.HOST_ID)) is False
    assert domain.run(other.host_status(LabDomain.HOST_ID)) == "unavailable"
    assert domain.run(other.sdm_owner()) == (-1, -1)
    with pytest.raises(errors.AcquireHostIdFailure, match="not joined"):
        domain.run(other.wait_joined(LabDomain.HOST_ID, timeout=1))
    with pytest.raises(errors.AcquireHostIdFailure, match="not joined"):
        domain.run(other.acquire_sdm())
    domain.run(other.leave(LabDomain.HOST_ID))  # not joined: nothing to do


def test_format_needs_a_usable_area(domain: LabDomain, tmp_path: Path) -> None:
    missing = DomainLock(
        domain.sanlock,
        domain.name + "-y",
        tmp_path / "no-such-ids",
        tmp_path / "no-such-leases",
        alignment=domain.alignment,
        block_size=512,
        io_timeout=1,
    )
    with pytest.raises(errors.ClusterLockInitError):
        domain.run(missing.format())
