"""Network figures for make bench (needs root): all inside a throw-away network namespace.

- Host.setupNetworks making 50 bridged networks, each on its own veth "NIC", against the
  bare pyroute2 calls that make the same links (bridge, port, up), same namespace, same
  run.  Medians of 3 rounds; each round starts from the bare veths.
- Host.getNetworkCapabilities with 100 veth interfaces (+ the 50 bridges): p50/p99 of
  sequential calls as the engine makes them (report cached between link changes), and
  of calls each made right after a link change (report rebuilt).

The namespace side runs as `ip netns exec <ns> python -m bench.network --inner`, which
starts the daemon there too, and prints its figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import lab

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = 50


def bare_pyroute2(count: int) -> float:
    """Seconds for the links setupNetworks makes: a bridge per NIC, the NIC as its port,
    the bridge up."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        started = time.perf_counter()
        # The leanest sequence: links named by ifname, one lookup for the port's master.
        for n in range(count):
            ipr.link("add", ifname=f"br{n}", kind="bridge", br_stp_state=0, mtu=1500)
            bridge = ipr.link("get", ifname=f"br{n}")[0]["index"]
            ipr.link("set", ifname=f"veth_{n}", master=bridge)
            ipr.link("set", ifname=f"br{n}", state="up")
        elapsed = time.perf_counter() - started
        for n in range(count):
            ipr.link("del", ifname=f"br{n}")
    return elapsed


def set_mtu(name: str, mtu: int) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], mtu=mtu)


async def daemon_rounds(port: int, rounds: int, quick: bool) -> dict[str, Any]:
    from vdsm.client.stomp import StompClient

    client = await StompClient.connect("127.0.0.1", port)

    async def call(method: str, **params: Any) -> Any:
        return await client.call(method, params, timeout=300)

    no_check = {"connectivityCheck": False}
    networks = {f"net{n}": {"nic": f"veth_{n}", "bridged": True} for n in range(NETWORKS)}
    setup_times, bare_times = [], []
    for _ in range(rounds):
        # In a thread: pyroute2's synchronous IPRoute refuses a thread with a running loop.
        bare_times.append(await asyncio.to_thread(bare_pyroute2, NETWORKS))
        started = time.perf_counter()
        answer = await call("Host.setupNetworks", networks=networks, bondings={}, options=no_check)
        setup_times.append(time.perf_counter() - started)
        if answer != {"code": 0, "message": "Done"}:
            raise RuntimeError(f"setupNetworks failed: {answer}")
        removal = {name: {"remove": True} for name in networks}
        await call("Host.setupNetworks", networks=removal, bondings={}, options=no_check)
    await call("Host.setupNetworks", networks=networks, bondings={}, options=no_check)

    caps = await call("Host.getNetworkCapabilities")
    interfaces = len(caps["nics"]) + len(caps["bridges"])
    cached = []
    for _ in range(200 if quick else 1000):
        started = time.perf_counter()
        await call("Host.getNetworkCapabilities")
        cached.append(time.perf_counter() - started)
    rebuilt = []
    for n in range(30 if quick else 100):
        await asyncio.to_thread(set_mtu, "veth_0p", 1400 + n % 2)
        await asyncio.sleep(0.05)  # the change notification reaches the daemon
        started = time.perf_counter()
        await call("Host.getNetworkCapabilities")
        rebuilt.append(time.perf_counter() - started)
    await client.close()
    return {
        "setup_s": statistics.median(setup_times),
        "bare_s": statistics.median(bare_times),
        "interfaces": interfaces,
        "caps_p50_ms": _pct(cached, 0.5),
        "caps_p99_ms": _pct(cached, 0.99),
        "rebuilt_p50_ms": _pct(rebuilt, 0.5),
        "rebuilt_p99_ms": _pct(rebuilt, 0.99),
    }


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def inner(quick: bool) -> dict[str, Any]:
    from bench.__main__ import vdsmd

    for n in range(NETWORKS):
        subprocess.run(
            ["ip", "link", "add", f"veth_{n}", "type", "veth", "peer", "name", f"veth_{n}p"],
            check=True,
        )
        for name in (f"veth_{n}", f"veth_{n}p"):
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
    with (
        tempfile.TemporaryDirectory(prefix="vdsm-bench-net-") as tmp,
        vdsmd(Path(tmp) / "daemon") as (_, port, _),
    ):
        return asyncio.run(daemon_rounds(port, 2 if quick else 3, quick))


def run(quick: bool) -> dict[str, Any] | str:
    """The figures, or why they could not be measured."""
    if os.geteuid() != 0:
        return "skipped: needs root (network namespaces)"
    from tests.lab.resources import NetNS

    ns = NetNS.create(veth=None)
    try:
        argv = ["ip", "netns", "exec", ns.name, sys.executable, "-m", "bench.network", "--inner"]
        if quick:
            argv.append("--quick")
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            return f"failed: {proc.stderr.strip()[-2000:]}"
        return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        ns.delete()


# -- the kernel lab: 10 VLAN networks on one bond ---------------------------------------

VLANS = 10


def bare_bond_vlans() -> float:
    """Seconds for the links the VLAN networks need: an 802.3ad bond over two dummies,
    ten VLANs on it, all up."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        started = time.perf_counter()
        ipr.link("add", ifname="bond0", kind="bond", bond_mode=4)
        bond = ipr.link("get", ifname="bond0")[0]["index"]
        for nic in ("dummy_1", "dummy_2"):
            ipr.link("set", ifname=nic, state="down")
            ipr.link("set", ifname=nic, master=bond)
            ipr.link("set", ifname=nic, state="up")
        ipr.link("set", ifname="bond0", state="up")
        for n in range(VLANS):
            ipr.link("add", ifname=f"bond0.{100 + n}", kind="vlan", link=bond, vlan_id=100 + n)
            ipr.link("set", ifname=f"bond0.{100 + n}", state="up")
        elapsed = time.perf_counter() - started
        ipr.link("del", ifname="bond0")
    return elapsed


async def lab_rounds(port: int, rounds: int) -> dict[str, Any]:
    from vdsm.client.stomp import StompClient

    client = await StompClient.connect("127.0.0.1", port)

    async def call(method: str, **params: Any) -> Any:
        return await client.call(method, params, timeout=600)

    no_check = {"connectivityCheck": False}
    networks = {
        f"vlan{100 + n}": {"bonding": "bond0", "vlan": 100 + n, "bridged": False}
        for n in range(VLANS)
    }
    bond = {"bond0": {"nics": ["dummy_1", "dummy_2"], "options": "mode=4"}}
    setup_times, bare_times = [], []
    for _ in range(rounds):
        bare_times.append(await asyncio.to_thread(bare_bond_vlans))
        started = time.perf_counter()
        answer = await call(
            "Host.setupNetworks", networks=networks, bondings=bond, options=no_check
        )
        setup_times.append(time.perf_counter() - started)
        if answer != {"code": 0, "message": "Done"}:
            raise RuntimeError(f"setupNetworks failed: {answer}")
        removal = {name: {"remove": True} for name in networks}
        await call(
            "Host.setupNetworks",
            networks=removal,
            bondings={"bond0": {"remove": True}},
            options=no_check,
        )
    await client.close()
    return {"setup_s": statistics.median(setup_times), "bare_s": statistics.median(bare_times)}


def lab_inner(out: Path) -> None:
    from bench.__main__ import vdsmd

    subprocess.run(["modprobe", "-a", "bonding", "dummy", "8021q"], check=True)
    for nic in ("dummy_1", "dummy_2"):
        subprocess.run(["ip", "link", "add", nic, "type", "dummy"], check=True)
        subprocess.run(["ip", "link", "set", nic, "up"], check=True)
    with (
        tempfile.TemporaryDirectory(prefix="vdsm-bench-lab-") as tmp,
        vdsmd(Path(tmp) / "daemon") as (_, port, _),
    ):
        figures = asyncio.run(lab_rounds(port, 3))
    (out / "network-lab.json").write_text(json.dumps(figures))


def run_lab() -> dict[str, Any] | str:
    """10 VLAN networks on a bond, in the kernel lab (the host kernel has no bonding)."""
    return lab.run("bench.network", "network-lab.json", timeout=600)


def report(
    figures: dict[str, Any] | str, lab: dict[str, Any] | str | None = None
) -> list[tuple[str, bool, str]]:
    """Prints the network section of make bench; returns its target checks."""
    print("Network (in a network namespace, real netlink)")
    if lab is not None:
        if isinstance(lab, str):
            print(f"  kernel lab, {VLANS} VLAN networks on a bond: {lab}")
        else:
            print(
                f"  kernel lab (QEMU TCG: Python runs 20-30x slower, pyroute2 too), "
                f"{VLANS} VLAN networks on an 802.3ad bond: setupNetworks "
                f"{lab['setup_s']:.2f} s, bare pyroute2 {lab['bare_s']:.2f} s, "
                f"ratio {lab['setup_s'] / lab['bare_s']:.2f} (informational: the daemon's "
                "Python share is inflated by emulation)"
            )
    if isinstance(figures, str):
        print(f"  {figures}")
        return []
    ratio = figures["setup_s"] / figures["bare_s"]
    print(
        f"  setupNetworks, {NETWORKS} bridged networks on veths: {figures['setup_s']:.3f} s; "
        f"bare pyroute2 calls making the same links: {figures['bare_s']:.3f} s; "
        f"ratio {ratio:.2f}"
    )
    print(
        f"  Host.getNetworkCapabilities, {figures['interfaces']} interfaces "
        f"(100 veths + {NETWORKS} bridges): p50 {figures['caps_p50_ms']:.2f} ms, "
        f"p99 {figures['caps_p99_ms']:.2f} ms; right after a link change (report rebuilt): "
        f"p50 {figures['rebuilt_p50_ms']:.1f} ms, p99 {figures['rebuilt_p99_ms']:.1f} ms"
    )
    return [
        ("setupNetworks (50 bridges) <= 1.5x bare pyroute2", ratio <= 1.5, f"{ratio:.2f}x"),
        (
            "getNetworkCapabilities (100+ interfaces) p99 <= 20 ms",
            figures["caps_p99_ms"] <= 20.0,
            f"{figures['caps_p99_ms']:.2f} ms",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--inner", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lab-inner", type=Path, default=None)
    parser.add_argument("--lab", action="store_true")
    args = parser.parse_args()
    if args.lab_inner:
        lab_inner(args.lab_inner)
    elif args.lab:
        print(json.dumps(run_lab()))
    elif not args.inner:
        print(json.dumps(run(args.quick)))
    else:
        print(json.dumps(inner(args.quick)))
