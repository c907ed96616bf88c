"""Helpers for the network tests: a daemon in its own namespace, an "engine" namespace
reaching it over a veth, JSON-RPC clients on either side, and the kernel state as `ip`
shows it (for before/after comparisons)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from tests.lab.resources import NetNS
from tests.lab.vdsmd import VdsmdProcess, connect_in_netns
from tests.support.rawstomp import RawStomp

# Upstream's default fake_nics pattern is veth_*: these names are reported as NICs.
NIC = "veth_0"
ENGINE_ADDR = "10.77.0.1"
HOST_ADDR = "10.77.0.2"


class Client:
    def __init__(self, sock: Any, timeout: float = 60.0) -> None:
        self.c = RawStomp("", 0, sock=sock)
        self.c.connect()
        self.timeout = timeout

    def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        return self.c.call(method, params, timeout=timeout or self.timeout)

    def result(self, method: str, params: Any = None) -> Any:
        answer = self.call(method, params)
        assert "result" in answer, answer
        return answer["result"]

    def error(self, method: str, params: Any = None) -> dict[str, Any]:
        answer = self.call(method, params)
        assert "error" in answer, answer
        return answer["error"]  # type: ignore[no-any-return]

    def setup(self, networks: Any, bondings: Any = None, **options: Any) -> Any:
        options.setdefault("connectivityCheck", False)
        return self.call(
            "Host.setupNetworks",
            {"networks": networks, "bondings": bondings or {}, "options": options},
        )

    def close(self) -> None:
        self.c.close()


def host_client(daemon: VdsmdProcess) -> Client:
    """A client on the daemon's own loopback: never cut by a network change."""
    return Client(daemon.connect())


class EnginePinger:
    """The engine's side of the connectivity check: from the engine namespace, keeps
    calling Host.confirmConnectivity on the host's management address, reconnecting
    whenever the connection breaks, until stopped."""

    def __init__(self, engine: NetNS, address: str, port: int) -> None:
        self.engine = engine
        self.address = address
        self.port = port
        self.confirmed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine pinger", daemon=True)

    def _run(self) -> None:
        client: Client | None = None
        while not self._stop.is_set():
            try:
                if client is None:
                    client = Client(
                        connect_in_netns(self.engine.name, (self.address, self.port), 0.5)
                    )
                answer = client.call("Host.confirmConnectivity", timeout=1.0)
                if "result" in answer:
                    self.confirmed += 1
            except (OSError, TimeoutError, AssertionError):
                if client is not None:
                    client.close()
                client = None
            self._stop.wait(0.2)
        if client is not None:
            client.close()

    def __enter__(self) -> EnginePinger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def reachable(engine: NetNS, address: str, port: int) -> bool:
    try:
        client = Client(connect_in_netns(engine.name, (address, port), 1.0), timeout=5)
    except OSError:
        return False
    try:
        return "result" in client.call("Host.ping2", timeout=5)
    except (OSError, TimeoutError):
        return False
    finally:
        client.close()


def kernel_view(ns: NetNS) -> dict[str, Any]:
    """Links (kind, master, lower, mtu, up), global addresses, main-table routes, the
    IPv4 routes of the other tables and the IPv4 policy rules (source routing)."""
    links = {}
    for link in json.loads(ns.ip("-j", "-d", "link", "show")):
        info = link.get("linkinfo", {})
        links[link["ifname"]] = {
            "kind": info.get("info_kind"),
            "master": link.get("master"),
            "link": link.get("link"),
            "mtu": link["mtu"],
            "up": "UP" in link.get("flags", []),
        }
    addresses = {}
    for link in json.loads(ns.ip("-j", "addr", "show")):
        cidrs = sorted(
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        )
        if cidrs:
            addresses[link["ifname"]] = cidrs
    routes = sorted(
        f"{r['dst']} via {r.get('gateway', '-')} dev {r['dev']}"
        for r in json.loads(ns.ip("-j", "route", "show"))
    )
    tables = sorted(
        f"{r['dst']} via {r.get('gateway', '-')} dev {r['dev']} table {r['table']}"
        for r in json.loads(ns.ip("-4", "-j", "route", "show", "table", "all"))
        if r.get("table", "main") not in ("main", "local", "default")
    )
    rules = [
        f"{r['priority']}: from {r['src']}{'/' + str(r['srclen']) if 'srclen' in r else ''}"
        f" to {r.get('dst', 'all')}{'/' + str(r['dstlen']) if 'dstlen' in r else ''}"
        f" lookup {r['table']}"
        for r in json.loads(ns.ip("-4", "-j", "rule", "show"))
    ]
    return {
        "links": links,
        "addresses": addresses,
        "routes": routes,
        "tables": tables,
        "rules": rules,
    }


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


@contextlib.contextmanager
def closing(client: Client) -> Iterator[Client]:
    try:
        yield client
    finally:
        client.close()
