from vdsm.host import memory, sampling
from vdsm.system.procfs import CpuTimes, ProcStat


def test_memory_stats_units():
    info = {
        "MemTotal": 16 * 1024 * 1024,
        "MemFree": 2 * 1024 * 1024,
        "Cached": 1024 * 1024,
        "Buffers": 512 * 1024,
        "SReclaimable": 512 * 1024,
        "SwapTotal": 4 * 1024 * 1024,
        "SwapFree": 3 * 1024 * 1024,
        "AnonHugePages": 2048 * 10,
    }
    stats = memory.memory_stats(info)
    assert stats.mem_free == 4096  # MiB: free + cache + buffers + reclaimable slab
    assert stats.mem_used == "75"
    assert (stats.swap_total, stats.swap_free) == (4096, 3072)
    assert stats.anon_huge_pages == "20"


def test_thp_state(tmp_path):
    path = tmp_path / "enabled"
    assert memory.thp_state(path) == "never"
    path.write_text("always [madvise] never\n")
    assert memory.thp_state(path) == "madvise"


def test_hugepage_state(tmp_path):
    pool = tmp_path / "hugepages-2048kB"
    pool.mkdir()
    for key, value in {"nr_hugepages": 10, "free_hugepages": 4, "resv_hugepages": 1}.items():
        (pool / key).write_text(f"{value}\n")
    (tmp_path / "junk").mkdir()
    state = memory.hugepage_state(tmp_path)
    assert list(state) == [2048]
    assert state[2048]["nr_hugepages"] == 10
    assert state[2048]["vm.free_hugepages"] == 4
    assert state[2048]["surplus_hugepages"] == 0
    assert memory.hugepage_sizes(tmp_path) == [2048]


def test_ksm(tmp_path):
    (tmp_path / "run").write_text("1\n")
    (tmp_path / "pages_to_scan").write_text("64\n")
    (tmp_path / "merge_across_nodes").write_text("0\n")
    (tmp_path / "pages_sharing").write_text(str(2 * 1024 * 1024 * 1024 // memory.PAGE_SIZE))
    ksm = memory.read_ksm(tmp_path)
    assert memory.ksm_stats(ksm, 3) == {
        "ksmState": True,
        "ksmPages": 64,
        "ksmMergeAcrossNodes": False,
        "memShared": 2048,
        "ksmCpu": 3,
    }


def sample(t, total, cpus=None, own=(0, 0), ksmd=None):
    return sampling.HostSample(t, ProcStat(total, cpus or {}, 1), own, ksmd)


def test_cpu_percent_shares_sum_to_100():
    first = CpuTimes(user=100, nice=0, system=50, idle=850)
    last = CpuTimes(user=130, nice=10, system=70, idle=880, iowait=10)
    user, system, idle = sampling.cpu_percent(first, last)
    # 100 ticks passed: 40 user (incl. nice), 20 system, the rest idle.
    assert (round(user, 6), round(system, 6), round(idle, 6)) == (40.0, 20.0, 40.0)


def test_no_ticks_means_idle():
    times = CpuTimes(1, 2, 3, 4)
    assert sampling.cpu_percent(times, times) == (0.0, 0.0, 100.0)


def test_rates_between_samples():
    tick = sampling.CLOCK_TICKS
    first = sample(10.0, CpuTimes(0, 0, 0, 0), {0: CpuTimes(0, 0, 0, 0)}, own=(0, 0), ksmd=0)
    last = sample(
        12.0,
        CpuTimes(user=50, system=50, idle=300),
        {0: CpuTimes(user=20, system=10, idle=170), 1: CpuTimes(user=5)},
        own=(tick, tick // 2),
        ksmd=tick // 5,
    )
    rates = sampling.rates(first, last)
    assert (rates.user, rates.system, rates.idle) == (12.5, 12.5, 75.0)
    assert rates.per_cpu == {0: (10.0, 5.0, 85.0)}  # cpu1 has no earlier sample
    # 1 s of user time in 2 s = 50 % of one CPU.
    assert round(rates.own_user, 6) == 50.0 and round(rates.own_system, 6) == 25.0
    assert round(rates.ksmd, 6) == 10.0
    stats = sampling.cpu_statistics(rates, {0: 1})
    expected = {"nodeIndex": 1, "cpuUser": "10.00", "cpuSys": "5.00", "cpuIdle": "85.00"}
    assert stats == {"0": expected}


def test_rates_since_boot():
    boot = sampling.boot_sample(1000.0)
    assert boot.boot
    last = sample(1000.0, CpuTimes(user=10, idle=90), {0: CpuTimes(user=10, idle=90)}, own=(5, 5))
    rates = sampling.rates(boot, last)
    assert (rates.user, rates.idle) == (10.0, 90.0)
    assert rates.per_cpu == {0: (10.0, 0.0, 90.0)}
    assert rates.own_user == 0.0  # unknown against boot


def test_window_keeps_the_last_two():
    window = sampling.SampleWindow()
    assert window.pair() is None and window.last is None
    samples = [sample(float(t), CpuTimes()) for t in range(3)]
    for s in samples:
        window.add(s)
    assert window.pair() == (samples[1], samples[2])
    assert len(window) == 2
