from vdsm.host import virtcaps

CAPS = """<capabilities>
  <host>
    <cpu><arch>x86_64</arch>
      <counter name='tsc' frequency='2596146000' scaling='no'/>
    </cpu>
  </host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <machine>pc-i440fx-7.2</machine>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'>
        <machine>pc-q35-8.0</machine>
        <machine canonical='pc-q35-8.0'>q35</machine>
      </domain>
    </arch>
  </guest>
</capabilities>"""

DOMCAPS = """<domainCapabilities>
  <cpu>
    <mode name='host-passthrough' supported='yes'/>
    <mode name='host-model' supported='yes'>
      <model fallback='forbid'>EPYC-Milan</model>
      <feature policy='require' name='x2apic'/>
      <feature policy='require' name='arch-capabilities'/>
      <feature policy='disable' name='svm'/>
    </mode>
    <mode name='custom' supported='yes'>
      <model usable='yes'>qemu64</model>
      <model usable='no'>EPYC-Milan</model>
      <model usable='yes'>Skylake-Server-IBRS</model>
      <model usable='unknown'>Haswell</model>
    </mode>
  </cpu>
</domainCapabilities>"""


def test_machines_of_the_kvm_domain_with_canonical_names():
    assert virtcaps.emulated_machines(CAPS, "x86_64") == ["pc-q35-8.0", "q35"]


def test_machines_fall_back_to_the_architecture():
    no_kvm = CAPS.replace("type='kvm'", "type='xen'")
    assert virtcaps.emulated_machines(no_kvm, "x86_64") == [
        "pc",
        "pc-i440fx-7.2",
        "pc-q35-7.2",
        "q35",
    ]


def test_unknown_architecture():
    assert virtcaps.emulated_machines(CAPS, "aarch64") == []


def test_tsc():
    assert virtcaps.tsc(CAPS) == ("2596146000", False)
    assert virtcaps.tsc("<capabilities><host><cpu/></host></capabilities>") is None


def test_usable_models_and_required_features():
    models = virtcaps.cpu_models(DOMCAPS)
    assert models == ["model_Skylake-Server-IBRS", "model_qemu64"]
    assert virtcaps.host_model_features(DOMCAPS) == ["x2apic", "arch-capabilities"]


def test_power_host_model():
    domcaps = """<domainCapabilities><cpu>
      <mode name='host-model' supported='yes'><model>POWER9</model></mode>
    </cpu></domainCapabilities>"""
    assert virtcaps.cpu_models(domcaps, "host-model") == ["model_POWER8", "model_POWER9"]


def test_cpu_flags_merge_dedupe_and_ibrs():
    flags = virtcaps.cpu_flags(["sse2", "vmx"], ["x2apic", "vmx"], ["model_Skylake-Server-IBRS"])
    assert flags == "sse2,vmx,x2apic,spec_ctrl,model_Skylake-Server-IBRS"
    assert virtcaps.cpu_flags(["spec_ctrl"], [], ["model_X-IBRS"]) == "spec_ctrl,model_X-IBRS"


def test_cluster_levels():
    base = ["4.2", "4.3", "4.4", "4.5", "4.6"]
    assert virtcaps.cluster_levels(None, None) == base
    assert virtcaps.cluster_levels((7, 10, 0), (9, 1, 0)) == base
    assert virtcaps.cluster_levels((8, 0, 0), None) == [*base, "4.7"]
    assert virtcaps.cluster_levels((10, 10, 0), (9, 0, 0)) == [*base, "4.7"]
    assert virtcaps.cluster_levels((10, 10, 0), (9, 1, 0)) == [*base, "4.7", "4.8"]
    assert virtcaps.cluster_levels((11, 0, 0), (10, 0, 0)) == [*base, "4.7", "4.8"]


def test_parse_version():
    assert virtcaps.parse_version("9.0.0") == (9, 0, 0)
    assert virtcaps.parse_version("7.2") == (7, 2)
    assert virtcaps.parse_version("7") is None
    assert virtcaps.parse_version("") is None
