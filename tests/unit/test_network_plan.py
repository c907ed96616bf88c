"""The planner's ordering and undo steps, and the transaction's undo on a failure.

The kernel here is a fake that records calls and can refuse one: a fault at an exact
step is the one thing the real-netlink tests (tests/integration/test_network_setup.py)
cannot choose freely."""

from __future__ import annotations

from typing import Any

import pytest

from vdsm.network import model, plan
from vdsm.network.apply import TransactionFailed, inverse, run_steps
from vdsm.network.running import KernelState, LinkState
from vdsm.network.sourceroute import RULE_PRIORITY, RuleSpec, TableRoute, table_id


def link(name: str, kind: str | None = None, **kw: Any) -> LinkState:
    values: dict[str, Any] = {
        "kind": kind,
        "master": None,
        "parent": None,
        "vlan_id": None,
        "mtu": 1500,
        "mac": "02:00:00:00:00:01",
        "up": True,
    }
    values.update(kw)
    return LinkState(name=name, **values)


def config(networks=None, bondings=None) -> model.NetConfig:
    req = model.canonical_request(networks or {}, bondings or {}, {})
    return model.merge(model.NetConfig(), req)


def steps_of(
    old: model.NetConfig, new: model.NetConfig, kernel: KernelState
) -> list[tuple[str, str]]:
    return [(s.action, s.device) for s in plan.plan(plan.layout(old), plan.layout(new), kernel)]


def test_vlan_network_on_a_bond_is_built_bottom_up() -> None:
    kernel = KernelState({"eth0": link("eth0"), "eth1": link("eth1")}, {}, {})
    new = config(
        {"net": {"bonding": "bond0", "vlan": 10, "ipaddr": "10.0.0.2", "prefix": 24}},
        {"bond0": {"nics": ["eth0", "eth1"], "options": "mode=1"}},
    )
    assert steps_of(model.NetConfig(), new, kernel) == [
        ("add_link", "bond0"),
        ("add_link", "bond0.10"),
        ("add_link", "net"),
        ("set_master", "eth0"),
        ("set_master", "eth1"),
        ("set_master", "bond0.10"),
        ("add_addr", "net"),
    ]
    # Created up: the bridge, the bond (its mode is all it needs), the VLAN on it.
    created = plan.plan(plan.Layout(), plan.layout(new), kernel)[:3]
    assert [s.args.get("up") for s in created] == [True, True, True]
    with_options = config(
        {"net": {"bonding": "bond0", "vlan": 10}},
        {"bond0": {"nics": ["eth0", "eth1"], "options": "mode=1 miimon=150"}},
    )
    assert ("set_up", "bond0") in steps_of(model.NetConfig(), with_options, kernel)
    assert ("set_up", "bond0.10") in steps_of(model.NetConfig(), with_options, kernel)


def test_bond_slaves_are_enslaved_as_bond_slaves() -> None:
    kernel = KernelState({"eth0": link("eth0"), "eth1": link("eth1")}, {}, {})
    new = config(bondings={"bond0": {"nics": ["eth0", "eth1"], "options": "mode=1"}})
    steps = plan.plan(plan.Layout(), plan.layout(new), kernel)
    enslave = [s for s in steps if s.action == "set_master"]
    assert [s.args for s in enslave] == [{"master": "bond0", "bond": True, "up": True}] * 2


def test_ipv6autoconf_sysctls_only_where_they_differ() -> None:
    conf = {"accept_ra": "1", "autoconf": "1"}
    kernel = KernelState(
        {"eth0": link("eth0")}, {}, {}, {"eth0": dict(conf), "default": dict(conf)}
    )
    off = config({"net": {"nic": "eth0", "bridged": False}})
    steps = plan.plan(plan.Layout(), plan.layout(off), kernel)
    assert [(s.action, s.args) for s in steps] == [
        ("set_ipv6_sysctl", {"key": "accept_ra", "value": "0"}),
        ("set_ipv6_sysctl", {"key": "autoconf", "value": "0"}),
    ]
    assert inverse(steps)[0].args == {"key": "autoconf", "value": "1"}
    on = config({"net": {"nic": "eth0", "bridged": False, "ipv6autoconf": True}})
    assert plan.plan(plan.Layout(), plan.layout(on), kernel) == []


def test_removal_tears_down_top_first_and_undo_rebuilds() -> None:
    old = config({"net": {"nic": "eth0", "ipaddr": "10.0.0.2", "prefix": 24, "vlan": 5}})
    kernel = KernelState(
        {
            "eth0": link("eth0"),
            "eth0.5": link("eth0.5", "vlan", parent="eth0", vlan_id=5, master="net"),
            "net": link("net", "bridge"),
        },
        {"net": {"10.0.0.2/24"}},
        {},
    )
    steps = plan.plan(plan.layout(old), plan.Layout(), kernel)
    assert [(s.action, s.device) for s in steps] == [
        ("del_addr", "net"),
        ("set_master", "eth0.5"),
        ("del_link", "net"),
        ("del_link", "eth0.5"),
    ]
    assert [(s.action, s.device, s.args) for s in inverse(steps)] == [
        ("add_link", "eth0.5", {"kind": "vlan", "mtu": 1500, "parent": "eth0", "vlan_id": 5}),
        ("set_up", "eth0.5", {}),
        ("add_link", "net", {"kind": "bridge", "mtu": 1500, "stp": False}),
        ("set_up", "net", {}),
        ("set_master", "eth0.5", {"master": "net"}),
        ("add_addr", "net", {"cidr": "10.0.0.2/24"}),
    ]


def test_a_parent_mtu_covers_its_vlans() -> None:
    new = config(
        {
            "a": {"nic": "eth0", "vlan": 1, "mtu": 9000, "bridged": False},
            "b": {"nic": "eth0", "vlan": 2, "mtu": 4000},
        }
    )
    devices = plan.layout(new).devices
    assert devices["eth0"].mtu == 9000
    assert devices["eth0.1"].mtu == 9000 and devices["eth0.2"].mtu == 4000


def test_unchanged_configuration_plans_nothing() -> None:
    cfg = config(
        {
            "net": {
                "nic": "eth0",
                "ipaddr": "10.0.0.2",
                "prefix": 24,
                "gateway": "10.0.0.1",
                "defaultRoute": True,
            }
        }
    )
    kernel = KernelState(
        {"eth0": link("eth0", master="net"), "net": link("net", "bridge")},
        {"net": {"10.0.0.2/24"}},
        {"net": {"10.0.0.1"}},
    )
    source = plan.layout(cfg).source_routes["net"]
    kernel.table_routes = {("net", source.table): source.routes()}
    kernel.rules = {source.table: list(source.rules())}
    assert steps_of(cfg, cfg, kernel) == []


def test_foreign_ports_stay_unless_their_bridge_goes() -> None:
    cfg = config({"net": {"nic": "eth0"}, "other": {"nic": "eth1"}})
    kernel = KernelState(
        {
            "eth0": link("eth0", master="net"),
            "eth1": link("eth1", master="other"),
            "net": link("net", "bridge"),
            "other": link("other", "bridge"),
            "vnet0": link("vnet0", "tun", master="net"),
            "vnet1": link("vnet1", "tun", master="other"),
        },
        {},
        {},
    )
    new = config({"net": {"nic": "eth0"}})
    steps = plan.plan(plan.layout(cfg), plan.layout(new), kernel)
    assert [(s.action, s.device) for s in steps] == [
        ("set_master", "eth1"),
        ("set_master", "vnet1"),
        ("del_link", "other"),
    ]


def test_default_route_elsewhere_is_displaced_and_given_back_on_undo() -> None:
    kernel = KernelState(
        {"eth0": link("eth0"), "eth1": link("eth1")}, {}, {"eth1": {"192.168.0.1"}}
    )
    new = config(
        {
            "net": {
                "nic": "eth0",
                "ipaddr": "10.0.0.2",
                "prefix": 24,
                "gateway": "10.0.0.1",
                "defaultRoute": True,
            }
        }
    )
    steps = plan.plan(plan.Layout(), plan.layout(new), kernel)
    main_table = [(s.action, s.device) for s in steps if s.action in ("add_route", "del_route")]
    assert main_table == [("del_route", "eth1"), ("add_route", "net")]
    assert ("add_route", "eth1") in [(s.action, s.device) for s in inverse(steps)]


class FakeKernel:
    def __init__(self, fail_at: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_at = fail_at

    def close(self) -> None:
        pass

    def __getattr__(self, action: str) -> Any:
        def call(device: str, **_args: Any) -> None:
            if f"{action} {device}" == self.fail_at:
                raise OSError(22, "refused")
            self.calls.append((action, device))

        return call


def test_a_failing_step_undoes_the_done_ones_in_reverse() -> None:
    kernel_state = KernelState({"eth0": link("eth0")}, {}, {})
    new = config({"net": {"nic": "eth0", "ipaddr": "10.0.0.2", "prefix": 24}})
    steps = plan.plan(plan.Layout(), plan.layout(new), kernel_state)
    fake = FakeKernel(fail_at="add_addr net")
    with pytest.raises(TransactionFailed, match="add_addr net") as failure:
        run_steps(fake, steps)
    assert failure.value.errno == 22
    assert fake.calls == [
        ("add_link", "net"),
        ("set_master", "eth0"),
        # undo, in reverse
        ("set_master", "eth0"),
        ("del_link", "net"),
    ]


def test_a_gateway_without_default_route_gets_its_own_table_and_rules() -> None:
    kernel = KernelState({"eth0": link("eth0"), "net": link("net", "bridge")}, {}, {})
    kernel.links["eth0"] = link("eth0", master="net")
    static = {"nic": "eth0", "ipaddr": "10.0.0.2", "prefix": 24, "gateway": "10.0.0.1"}
    new = config({"net": static})
    steps = plan.plan(plan.Layout(), plan.layout(new), kernel)
    table = table_id("net")
    assert table == 0x028B0148  # Adler-32 of "net", as upstream derives it
    assert [(s.action, s.args) for s in steps] == [
        ("add_addr", {"cidr": "10.0.0.2/24"}),
        ("add_table_route", {"table": table, "dst": "10.0.0.0/24", "gateway": None}),
        ("add_table_route", {"table": table, "dst": "0.0.0.0/0", "gateway": "10.0.0.1"}),
        (
            "add_rule",
            {"table": table, "priority": RULE_PRIORITY, "src": None, "dst": "10.0.0.0/24"},
        ),
        (
            "add_rule",
            {"table": table, "priority": RULE_PRIORITY, "src": "10.0.0.0/24", "dst": None},
        ),
    ]
    # No main-table default route: that is defaultRoute's business.
    assert not any(s.action == "add_route" for s in steps)
    assert [s.action for s in inverse(steps)] == [
        "del_rule",
        "del_rule",
        "del_table_route",
        "del_table_route",
        "del_addr",
    ]


def test_a_gateway_change_replaces_the_table_default_and_removal_drops_the_rules() -> None:
    static = {"nic": "eth0", "ipaddr": "10.0.0.2", "prefix": 24, "gateway": "10.0.0.1"}
    old = config({"net": static})
    table = table_id("net")
    kernel = KernelState(
        {"eth0": link("eth0", master="net"), "net": link("net", "bridge")},
        {"net": {"10.0.0.2/24"}},
        {},
    )
    kernel.table_routes = {
        ("net", table): {TableRoute("10.0.0.0/24", None), TableRoute("0.0.0.0/0", "10.0.0.1")}
    }
    kernel.rules = {table: [RuleSpec(None, "10.0.0.0/24"), RuleSpec("10.0.0.0/24", None)]}
    moved = config({"net": {**static, "gateway": "10.0.0.254"}})
    steps = plan.plan(plan.layout(old), plan.layout(moved), kernel)
    assert [(s.action, s.args.get("gateway")) for s in steps] == [
        ("del_table_route", "10.0.0.1"),
        ("add_table_route", "10.0.0.254"),
    ]
    assert inverse(steps)[-1].action == "add_table_route"
    assert inverse(steps)[-1].args["gateway"] == "10.0.0.1"

    removal = plan.plan(plan.layout(old), plan.Layout(), kernel)
    actions = [s.action for s in removal]
    assert actions[:4] == ["del_rule", "del_rule", "del_table_route", "del_table_route"]
    undo = inverse(removal)
    assert [s.action for s in undo[-4:]] == [
        "add_table_route",
        "add_table_route",
        "add_rule",
        "add_rule",
    ]
    assert undo[-4].args["gateway"] is None  # the link route before the gateway's
    # Rules come back in the kernel's order (one priority: tried in insertion order).
    assert [(s.args["src"], s.args["dst"]) for s in undo[-2:]] == [
        (None, "10.0.0.0/24"),
        ("10.0.0.0/24", None),
    ]


def test_removal_gives_a_nic_back_its_default_mtu_and_ipv6_sysctls() -> None:
    claimed = {"accept_ra": "0", "autoconf": "0"}
    fresh = {"accept_ra": "1", "autoconf": "1"}
    old = config({"net": {"nic": "eth0", "bridged": False, "mtu": 9000}})
    kernel = KernelState(
        {"eth0": link("eth0", mtu=9000)}, {}, {}, {"eth0": claimed, "default": fresh}
    )
    steps = plan.plan(plan.layout(old), plan.Layout(), kernel)
    assert [(s.action, s.args) for s in steps] == [
        ("set_mtu", {"mtu": 1500}),
        ("set_ipv6_sysctl", {"key": "accept_ra", "value": "1"}),
        ("set_ipv6_sysctl", {"key": "autoconf", "value": "1"}),
    ]
    assert [(s.action, s.args) for s in inverse(steps)] == [
        ("set_ipv6_sysctl", {"key": "autoconf", "value": "0"}),
        ("set_ipv6_sysctl", {"key": "accept_ra", "value": "0"}),
        ("set_mtu", {"mtu": 9000}),
    ]


def test_a_deleted_bridge_comes_back_with_its_ipv6_sysctls_on_undo() -> None:
    old = config({"net": {"nic": "eth0"}})
    kernel = KernelState(
        {"eth0": link("eth0", master="net"), "net": link("net", "bridge")},
        {},
        {},
        {
            "eth0": {"accept_ra": "1", "autoconf": "1"},
            "net": {"accept_ra": "0", "autoconf": "0"},
            "default": {"accept_ra": "1", "autoconf": "1"},
        },
    )
    steps = plan.plan(plan.layout(old), plan.Layout(), kernel)
    assert [(s.action, s.device) for s in steps] == [
        ("set_master", "eth0"),
        ("del_link", "net"),
    ]
    assert [(s.action, s.args.get("key")) for s in inverse(steps)] == [
        ("add_link", None),
        ("set_up", None),
        ("set_ipv6_sysctl", "accept_ra"),
        ("set_ipv6_sysctl", "autoconf"),
        ("set_master", None),
    ]
