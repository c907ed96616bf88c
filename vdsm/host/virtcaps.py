"""What libvirt says about virtualization on this host, for getCapabilities.

Pure functions over the capabilities and domain-capabilities XML: emulated machine
types, the CPU models the hypervisor can run (`model_*` flags), the host-model CPU
features, the TSC counter, and the cluster levels the libvirt/QEMU versions allow.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("vdsm.host.virtcaps")

BASE_CLUSTER_LEVELS = ("4.2", "4.3", "4.4", "4.5", "4.6")
SUPPORTED_ENGINES = ["4.2", "4.3", "4.4", "4.5"]


def _xml(text: str) -> Any:
    # The standard library parser is enough for these lookups and, unlike lxml, costs
    # no extra memory: libvirt's XML is trusted, and nothing here needs XPath.
    from xml.etree import ElementTree

    return ElementTree.fromstring(text)


def emulated_machines(caps_xml: str, arch: str) -> list[str]:
    """Machine types of `arch`, with the canonical names aliases point to.

    From the KVM domain of the architecture if it lists machines, else from the
    architecture itself (QEMU-only hosts).
    """
    caps = _xml(caps_xml)
    arch_node = None
    for node in caps.iterfind("guest/arch"):
        if node.get("name") == arch:
            arch_node = node
            break
    if arch_node is None:
        log.warning("libvirt capabilities list no guest architecture %s", arch)
        return []
    for domain in arch_node.iterfind("domain"):
        if domain.get("type") == "kvm":
            machines = _machines(domain)
            if machines:
                return machines
    return _machines(arch_node)


def _machines(node: Any) -> list[str]:
    names: set[str] = set()
    for machine in node.iterfind("machine"):
        if machine.text:
            names.add(machine.text.strip())
        if machine.get("canonical"):
            names.add(machine.get("canonical"))
    return sorted(names)


def tsc(caps_xml: str) -> tuple[str, bool] | None:
    """(frequency in Hz as a string, scaling) of the host's TSC, if libvirt knows it."""
    caps = _xml(caps_xml)
    for counter in caps.iterfind("host/cpu/counter"):
        if counter.get("name") == "tsc":
            return counter.get("frequency", ""), counter.get("scaling") == "yes"
    return None


def cpu_models(domcaps_xml: str, mode: str = "custom") -> list[str]:
    """CPU models usable on this host, as upstream's `model_<name>` flags.

    In "custom" mode a model counts when libvirt marks it usable="yes"; POWER hosts
    use "host-model", where every listed model counts.
    """
    domcaps = _xml(domcaps_xml)
    models: set[str] = set()
    for mode_node in domcaps.iterfind("cpu/mode"):
        if mode_node.get("name") != mode or mode_node.get("supported") != "yes":
            continue
        for model in mode_node.iterfind("model"):
            usable = model.get("usable") if mode == "custom" else "yes"
            if usable == "yes" and model.text:
                models.add(model.text.strip())
    if "POWER9" in models and "POWER8" not in models:
        # QEMU does not list the POWER8 compatibility mode of POWER9 hosts.
        models.add("POWER8")
    return sorted(f"model_{name}" for name in models)


def host_model_features(domcaps_xml: str) -> list[str]:
    """Features the host-model CPU requires (they include arch-capabilities bits)."""
    domcaps = _xml(domcaps_xml)
    features = []
    for mode_node in domcaps.iterfind("cpu/mode"):
        if mode_node.get("name") == "host-model":
            for feature in mode_node.iterfind("feature"):
                if feature.get("policy") == "require" and feature.get("name"):
                    features.append(feature.get("name"))
    return features


def cpu_flags(cpuinfo_flags: list[str], features: list[str], models: list[str]) -> str:
    """getCapabilities' cpuFlags: kernel flags and libvirt features, then model_* flags."""
    flags = sorted(set(cpuinfo_flags) | set(features))
    # A -IBRS model implies the spec_ctrl feature even if neither source lists it.
    if any(m.endswith("-IBRS") for m in models) and "spec_ctrl" not in flags:
        flags.append("spec_ctrl")
    return ",".join(flags + models)


def cluster_levels(libvirt: tuple[int, ...] | None, qemu: tuple[int, ...] | None) -> list[str]:
    levels = list(BASE_CLUSTER_LEVELS)
    if libvirt is not None and libvirt[:2] >= (8, 0):
        levels.append("4.7")
        if libvirt[:2] >= (10, 10) and qemu is not None and qemu[:2] >= (9, 1):
            levels.append("4.8")
    return levels


def parse_version(text: str) -> tuple[int, ...] | None:
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts) if len(parts) >= 2 else None
