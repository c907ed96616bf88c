from vdsm.system import procfs
from vdsm.system.procfs import CpuTimes

MEMINFO = """\
MemTotal:       16303828 kB
MemFree:         1234567 kB
Cached:           200000 kB
HugePages_Total:       4
Hugepagesize:       2048 kB
Bogus line without colon
Empty:
"""

NODE_MEMINFO = """\
Node 1 MemTotal:        8000000 kB
Node 1 MemFree:         4000000 kB
Node 1 HugePages_Free:      3
"""


def test_meminfo_values_in_kib_and_counts():
    info = procfs.parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 16303828
    assert info["MemFree"] == 1234567
    assert info["HugePages_Total"] == 4
    assert "Empty" not in info


def test_node_meminfo_prefix_is_dropped():
    info = procfs.parse_meminfo(NODE_MEMINFO)
    assert info == {"MemTotal": 8000000, "MemFree": 4000000, "HugePages_Free": 3}


PROC_STAT = """\
cpu  100 5 50 800 10 2 3 0 7 0
cpu0 60 5 30 400 5 1 1 0 7 0
cpu1 40 0 20 400 5 1 2 0
intr 123 4 5
btime 1700000000
procs_running 2
"""


def test_proc_stat_total_per_cpu_and_btime():
    stat = procfs.parse_proc_stat(PROC_STAT)
    assert stat.total == CpuTimes(100, 5, 50, 800, 10, 2, 3, 0)
    assert stat.total.total == 970  # guest time is not added twice
    assert set(stat.cpus) == {0, 1}
    assert stat.cpus[1] == CpuTimes(40, 0, 20, 400, 5, 1, 2, 0)
    assert stat.boot_time == 1700000000


def test_proc_stat_short_lines_are_padded():
    stat = procfs.parse_proc_stat("cpu 1 2 3 4\n")
    assert stat.total == CpuTimes(1, 2, 3, 4)
    assert stat.boot_time is None


def test_pid_stat_with_spaces_and_parens_in_name():
    # utime=11 stime=22 are fields 14 and 15.
    text = "1234 (evil ) name) S 1 2 3 4 5 6 7 8 9 10 11 22 0 0 20 0 1 0 100 0 0\n"
    assert procfs.parse_pid_cpu_ticks(text) == (11, 22)


def test_loadavg():
    assert procfs.parse_loadavg("0.10 0.25 0.50 1/234 5678\n") == ("0.10", "0.25", "0.50")


def test_key_values_unquotes_and_skips_comments():
    text = "NAME=\"Debian GNU/Linux\"\n# comment\nID=debian\nVERSION_ID='12'\nnoequals\n"
    assert procfs.parse_key_values(text) == {
        "NAME": "Debian GNU/Linux",
        "ID": "debian",
        "VERSION_ID": "12",
    }
    assert procfs.parse_key_values('A="b"', unquote=False) == {"A": '"b"'}


def test_cpu_list():
    assert procfs.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert procfs.parse_cpu_list("") == []


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 8:1 / /boot rw,relatime shared:5 - xfs /dev/sda1 rw
41 27 0:50 / /mnt/with\\040space rw - tmpfs tmp\\040fs rw
"""


def test_mountinfo_and_the_mount_of_a_path():
    mounts = procfs.parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == ["/proc", "/", "/boot", "/mnt/with space"]
    assert mounts[2].major == 8 and mounts[2].minor == 1
    assert mounts[2].fstype == "xfs" and mounts[2].source == "/dev/sda1"
    assert mounts[3].source == "tmp fs"
    assert procfs.mount_containing(mounts, "/boot").mount_point == "/boot"
    assert procfs.mount_containing(mounts, "/boot/grub").mount_point == "/boot"
    assert procfs.mount_containing(mounts, "/bootx").mount_point == "/"
    assert procfs.mount_containing(mounts, "/etc").source == "/dev/vda"


def test_read_helpers_defaults(tmp_path):
    assert procfs.read_text(tmp_path / "missing", "x") == "x"
    (tmp_path / "n").write_text("42\n")
    assert procfs.read_int(tmp_path / "n", 0) == 42
    (tmp_path / "bad").write_text("zz\n")
    assert procfs.read_int(tmp_path / "bad", 7) == 7
