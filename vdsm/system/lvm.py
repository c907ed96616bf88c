"""LVM as an async subprocess: the only module that runs `lvm`.

Block storage domains live on LVs of VGs shared by every host of a data center, so
this adapter follows three rules upstream VDSM learned the hard way:

* LVM sees only the devices we give it.  Every command carries a `--config` whose
  `filter`/`global_filter` accept exactly those devices (the LUNs discovery found) and
  reject everything else, and which turns off the host-local machinery that makes no
  sense on shared storage (the devices file, metadata backups, lvmpolld, monitoring).
* Reports are cached.  `vgs`/`lvs`/`pvs` are read once and kept until a command of
  ours changes the VG (or the caller invalidates it because another host may have);
  a verb never rescans.  A report that raced one of our changes is not stored.  After
  our own successful LV changes (create, tags, activation, extend, rename, remove) the
  cached LV report is updated in place rather than dropped: what the command did is
  known, so the lookup that follows needs no `lvs` (an LV we created has no uuid and
  no segments in the cache until the next report: callers needing those invalidate).
* Reports are retried.  Another host (the SPM) may be rewriting a VG's metadata while
  we read it; LVM then fails the read.  Read-only commands are retried a few times,
  changes never are (they are not idempotent).

Every command has a timeout; a command that outlives it is killed.

Without device-mapper (not in /proc/misc: this build host's kernel) the adapter
runs in metadata-only mode: every command gets `--driverloaded n`, and LVs are created
inactive and unzeroed.  Everything that lives in VG/LV metadata (tags, sizes, extents)
works; reading or writing an LV's data (activation) raises LvmUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from vdsm.system.lvmcommand import (
    DuplicateVG,
    LvmError,
    LvmTimeout,
    LvmUnavailable,
    _mib,
    _tag_args,
    build_config,
    device_mapper_available,
)
from vdsm.system.lvmreport import (  # noqa: F401  (re-exported: callers import them here)
    ATTR_INACTIVE,
    LV,
    LV_FIELDS,
    PV,
    PV_FIELDS,
    VG,
    VG_FIELDS,
    _report_rows,
    lv_path,
    parse_lvs,
    parse_pvs,
    parse_vgs,
    round_up_to_extent,
    with_active,
    with_tags,
)

log = logging.getLogger("vdsm.system.lvm")

LVM = "lvm"
DEFAULT_TIMEOUT = 60.0
READ_RETRIES = 3
READ_RETRY_DELAY = 0.1
MiB = 1024 * 1024
ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1", "LC_ALL": "C"}


def _retrieve(task: asyncio.Future[Any]) -> None:
    # a shared report whose every caller was cancelled: its outcome is not an error
    if not task.cancelled():
        task.exception()


# An in-place update of one VG's cached LVs after our own command succeeded; answers
# False when it cannot tell what the command did (the cache is then dropped).
LvUpdate = Callable[[dict[str, LV]], bool]


class Lvm:
    """One per daemon.  `devices` answers the device paths LVM may see (discovery's
    LUNs); it is asked before every command, so new LUNs are seen at once."""

    def __init__(
        self,
        devices: Callable[[], Iterable[str]],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        device_mapper: bool | None = None,
        command: str = LVM,
    ) -> None:
        self._devices = devices
        self.timeout = timeout
        self.device_mapper = device_mapper_available() if device_mapper is None else device_mapper
        self.command = command
        self._vgs: dict[str, VG] | None = None
        self._duplicate_vgs: set[str] = set()
        self._pvs: dict[str, PV] | None = None
        self._lvs: dict[str, dict[str, LV]] = {}
        self._extent_sizes: dict[str, int] = {}  # by VG name, from any report
        # by VG: the active LVs whose device-mapper table this process loaded (lvcreate
        # -ay, lvchange -ay or --refresh, lvextend), with the size they had then.  While
        # the report still shows that size, the table matches the metadata and
        # activating them again needs no refresh; another host's lvextend changes the
        # size the next report shows, and the refresh happens then.
        self._loaded: dict[str, dict[str, int]] = {}
        # bumped by every change: a report that started before a change is not cached
        self._generation = 0
        # bumped when only the PV report goes (a udev event on a device): VG and LV
        # reports read meanwhile stay good
        self._pv_generation = 0
        self._lvs_reads: dict[str, tuple[int, asyncio.Future[dict[str, LV]]]] = {}
        self.commands_run = 0

    @property
    def generation(self) -> int:
        """Changes whenever a command of ours changed LVM metadata or a cache was
        invalidated: whoever derives facts from devices can tell they may be stale."""
        return self._generation + self._pv_generation

    @property
    def mode(self) -> str:
        return "device-mapper" if self.device_mapper else "metadata-only"

    # -- running ------------------------------------------------------------------------

    async def run(self, command: str, *args: str, read_only: bool = False) -> bytes:
        """Runs `lvm COMMAND --config ... ARGS`; answers stdout.  Read-only commands are
        retried when they fail: a VG being rewritten by another host fails a read."""
        argv = [self.command, command, "--config", build_config(self._devices())]
        if not self.device_mapper:
            argv += ["--driverloaded", "n"]
        argv += args
        attempts = READ_RETRIES if read_only else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._exec(argv)
            except LvmTimeout:
                raise
            except LvmError as e:
                if attempt == attempts or e.not_found:
                    raise
                log.warning("%s (attempt %d of %d); retrying", e, attempt, attempts)
                await asyncio.sleep(READ_RETRY_DELAY * attempt)
        raise AssertionError("unreachable")

    async def _exec(self, argv: list[str]) -> bytes:
        self.commands_run += 1
        log.debug("running %s", " ".join(a for a in argv if not a.startswith("devices {")))
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **ENV},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except BaseException as e:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if isinstance(e, TimeoutError):
                raise LvmTimeout(argv, None, f"no answer in {self.timeout:g} s") from None
            raise
        log.debug(
            "lvm %s exited %d after %.3f s", argv[1], proc.returncode, time.monotonic() - started
        )
        if proc.returncode != 0:
            raise LvmError(argv, proc.returncode, err.decode(errors="replace"))
        return out

    async def _report(
        self, command: str, fields: str, key: str, *args: str
    ) -> list[dict[str, str]]:
        out = await self.run(
            command,
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            fields,
            *args,
            read_only=True,
        )
        return _report_rows(out, key)

    # -- reports (cached) ------------------------------------------------------------------

    async def pvs(self) -> dict[str, PV]:
        """Every PV on the visible devices, by device path."""
        if self._pvs is None:
            generation = self.generation
            pvs = parse_pvs(await self._report("pvs", PV_FIELDS, "pv"))
            if generation != self.generation:
                return pvs
            self._pvs = pvs
        return dict(self._pvs)

    async def vgs(self) -> dict[str, VG]:
        """Every visible VG, by name."""
        if self._vgs is None:
            generation = self._generation
            vgs, duplicates = parse_vgs(await self._report("vgs", VG_FIELDS, "vg"))
            for vg in vgs.values():
                self._extent_sizes[vg.name] = vg.extent_size
            if generation != self._generation:
                return vgs
            self._vgs, self._duplicate_vgs = vgs, duplicates
        return dict(self._vgs)

    async def vg(self, name: str) -> VG | None:
        """The VG of that name, or None.  DuplicateVG if two VGs carry the name."""
        vgs = await self.vgs()
        if name in self._duplicate_vgs:
            raise DuplicateVG(name, sorted(v.uuid for v in vgs.values() if v.name == name))
        return vgs.get(name)

    async def lvs(self, vg_name: str) -> dict[str, LV]:
        """The LVs of one VG, by name (raises LvmError if the VG is not visible).
        Callers that miss the cache together share one `lvs` (unless a change came
        between: the later caller must see it)."""
        cached = self._lvs.get(vg_name)
        if cached is not None:
            return dict(cached)
        reading = self._lvs_reads.get(vg_name)
        if reading is None or reading[0] != self._generation or reading[1].done():
            task = asyncio.ensure_future(self._read_lvs(vg_name))
            task.add_done_callback(_retrieve)
            reading = (self._generation, task)
            self._lvs_reads[vg_name] = reading
        try:
            return dict(await asyncio.shield(reading[1]))
        finally:
            if reading[1].done() and self._lvs_reads.get(vg_name) is reading:
                del self._lvs_reads[vg_name]

    async def _read_lvs(self, vg_name: str) -> dict[str, LV]:
        generation = self._generation
        rows = await self._report("lvs", LV_FIELDS, "lv", vg_name)
        found = parse_lvs(rows)
        if rows and rows[0].get("vg_extent_size"):
            self._extent_sizes[vg_name] = int(rows[0]["vg_extent_size"])
        if generation == self._generation:
            self._lvs[vg_name] = found
        return found

    async def lv(self, vg_name: str, lv_name: str) -> LV | None:
        """One LV; a miss re-reads the VG once (another host may have created it)."""
        found = (await self.lvs(vg_name)).get(lv_name)
        if found is None:
            self.invalidate_lvs(vg_name)
            found = (await self.lvs(vg_name)).get(lv_name)
        return found

    def invalidate_vg(self, vg_name: str) -> None:
        """Forget what we know of a VG (another host may have changed it)."""
        self._generation += 1
        self._vgs = None
        self._pvs = None
        self._lvs.pop(vg_name, None)

    def invalidate_pvs(self) -> None:
        """Forget the PV report (another host may have created a PV or VG)."""
        self._pv_generation += 1
        self._pvs = None

    def invalidate_lvs(self, vg_name: str) -> None:
        self._generation += 1
        self._lvs.pop(vg_name, None)

    def invalidate_all(self) -> None:
        self._generation += 1
        self._vgs = None
        self._pvs = None
        self._lvs.clear()

    async def _change(
        self,
        vg_name: str | None,
        command: str,
        *args: str,
        update: LvUpdate | None = None,
        metadata: bool = True,
    ) -> None:
        """A command that changes LVM metadata (or, `metadata=False`, only activation).
        Without `update` the cache of what it touched goes; with it, after success, the
        VG's cached LVs are updated in place (the VG and PV reports, whose free space
        and metadata area changed, still go unless only activation changed)."""
        try:
            await self.run(command, *args)
        except BaseException:
            # even a failed change may have changed something (lvcreate half way)
            if vg_name is None:
                self.invalidate_all()
            else:
                self.invalidate_vg(vg_name)
            raise
        if vg_name is None:
            self.invalidate_all()
            return
        if update is None:
            self.invalidate_vg(vg_name)
            return
        # a report that started before this change must not be stored
        self._generation += 1
        if metadata:
            self._vgs = None
            self._pvs = None
        cached = self._lvs.get(vg_name)
        if cached is not None and not update(cached):
            self._lvs.pop(vg_name, None)

    def _mark_loaded(
        self, vg_name: str, names: Iterable[str], loaded: bool, sizes: dict[str, int] | None = None
    ) -> None:
        """Records (or forgets) the tables of `names` as loaded at their size: from
        `sizes`, else from the cache; an LV of unknown size is forgotten (one refresh
        too many, never one too few)."""
        current = self._loaded.setdefault(vg_name, {})
        known = {n: lv.size for n, lv in self._lvs.get(vg_name, {}).items()}
        known.update(sizes or {})
        for name in names:
            if loaded and name in known:
                current[name] = known[name]
            else:
                current.pop(name, None)

    def _table_current(self, vg_name: str, lv: LV) -> bool:
        return self._loaded.get(vg_name, {}).get(lv.name) == lv.size

    # -- PVs and VGs ---------------------------------------------------------------------

    async def create_pvs(
        self,
        devices: Sequence[str],
        *,
        metadata_size: int,
        force: bool = False,
        metadata_copies: int | None = None,
        metadata_ignore: bool = False,
    ) -> None:
        """`metadata_copies=2, metadata_ignore=True` is upstream's layout for domain
        PVs: a second metadata area at the end of each PV, both ignored until
        `enable_metadata_area` turns on the first PV's."""
        args = ["-y", "--metadatasize", f"{metadata_size}b"]
        if metadata_copies is not None:
            args += ["--metadatacopies", str(metadata_copies)]
        if metadata_ignore:
            args += ["--metadataignore", "y"]
        if force:
            args.append("-ff")
        await self._change(None, "pvcreate", *args, *devices)

    async def enable_metadata_area(self, device: str) -> None:
        """Makes LVM keep the VG metadata in this PV's areas."""
        await self._change(None, "pvchange", "--metadataignore", "n", device)

    async def create_vg(
        self,
        name: str,
        devices: Sequence[str],
        *,
        extent_size: int,
        tags: Iterable[str] = (),
        auto_activation: bool | None = None,
    ) -> None:
        args = ["-s", f"{extent_size}b", *_tag_args("--addtag", tags)]
        if auto_activation is not None:
            # shared VGs must not be activated by any host's boot or udev rules
            args += ["--setautoactivation", "y" if auto_activation else "n"]
        await self._change(None, "vgcreate", *args, name, *devices)

    async def change_vg_tags(
        self, name: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        args = [*_tag_args("--deltag", remove), *_tag_args("--addtag", add)]
        if args:
            await self._change(name, "vgchange", *args, name)

    async def extend_vg(self, name: str, devices: Sequence[str]) -> None:
        await self._change(name, "vgextend", name, *devices)

    async def resize_pv(self, vg_name: str, device: str) -> None:
        await self._change(vg_name, "pvresize", device)

    async def remove_vg(self, name: str) -> None:
        await self._change(name, "vgremove", "-f", name)

    async def remove_pvs(self, devices: Sequence[str]) -> None:
        await self._change(None, "pvremove", "-y", "-ff", *devices)

    # -- LVs -------------------------------------------------------------------------------

    async def create_lv(
        self,
        vg_name: str,
        name: str,
        size: int,
        *,
        tags: Iterable[str] = (),
        activate: bool = False,
        device: str | None = None,
    ) -> None:
        """Creates an LV of at least `size` bytes (LVM rounds up to whole extents),
        inactive unless `activate`; on `device` (a PV path) if given."""
        tags = list(tags)
        args = ["-y", "-W", "n", "-n", name, "-L", _mib(size), *_tag_args("--addtag", tags)]
        if activate:
            if not self.device_mapper:
                raise LvmUnavailable(["lvcreate", name], None, "no device-mapper")
            args += ["-a", "y"]
        else:
            # an inactive LV cannot be zeroed; callers zero what needs it once active
            args += ["-a", "n", "--zero", "n"]
        args.append(vg_name)
        if device is not None:
            args.append(device)

        def created(lvs: dict[str, LV]) -> bool:
            extent = self._extent_sizes.get(vg_name)
            if extent is None:
                return False
            lv = LV(vg_name, name, "", ATTR_INACTIVE, round_up_to_extent(size, extent), tuple(tags))
            lvs[name] = with_active(lv, activate)
            return True

        await self._change(vg_name, "lvcreate", *args, update=created)
        if activate:
            extent = self._extent_sizes.get(vg_name)
            sizes = {name: round_up_to_extent(size, extent)} if extent else None
            self._mark_loaded(vg_name, [name], True, sizes)

    async def change_lv_tags(
        self,
        vg_name: str,
        name: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        deactivate: bool = False,
    ) -> None:
        """With `deactivate`, the LV is also deactivated by the same `lvchange` (LVM
        changes the tags first, then the activation: when the deactivation fails, as
        for an LV still open, the tags are changed all the same)."""
        add, remove = list(add), list(remove)
        args = [*_tag_args("--deltag", remove), *_tag_args("--addtag", add)]
        deactivate = deactivate and self.device_mapper
        if deactivate:
            args += ["-a", "n"]
        if not args:
            return

        def changed(lvs: dict[str, LV]) -> bool:
            if name not in lvs:
                return False
            lv = with_tags(lvs[name], add, remove)
            lvs[name] = with_active(lv, False) if deactivate else lv
            return True

        await self._change(vg_name, "lvchange", *args, f"{vg_name}/{name}", update=changed)
        if deactivate:
            self._mark_loaded(vg_name, [name], False)

    async def extend_lv(self, vg_name: str, name: str, size: int) -> None:
        """Grows the LV to at least `size` bytes; never shrinks it."""
        lv = await self.lv(vg_name, name)
        if lv is not None and lv.size >= size:
            return

        def extended(lvs: dict[str, LV]) -> bool:
            extent = self._extent_sizes.get(vg_name)
            if name not in lvs or extent is None:
                return False
            lvs[name] = replace(lvs[name], size=round_up_to_extent(size, extent))
            return True

        await self._change(
            vg_name, "lvextend", "-L", _mib(size), f"{vg_name}/{name}", update=extended
        )
        extent = self._extent_sizes.get(vg_name)
        if lv is not None and lv.active and extent:
            # an active LV gets its new table from lvextend itself
            self._mark_loaded(vg_name, [name], True, {name: round_up_to_extent(size, extent)})
        else:
            self._mark_loaded(vg_name, [name], False)

    async def rename_lv(self, vg_name: str, old: str, new: str) -> None:
        def renamed(lvs: dict[str, LV]) -> bool:
            if old not in lvs:
                return False
            lvs[new] = replace(lvs.pop(old), name=new)
            return True

        await self._change(vg_name, "lvrename", vg_name, old, new, update=renamed)
        self._mark_loaded(vg_name, [old, new], False)

    async def remove_lvs(self, vg_name: str, names: Sequence[str]) -> None:
        if not names:
            return

        def removed(lvs: dict[str, LV]) -> bool:
            for n in names:
                lvs.pop(n, None)
            return True

        await self._change(
            vg_name, "lvremove", "-f", *(f"{vg_name}/{n}" for n in names), update=removed
        )
        self._mark_loaded(vg_name, names, False)

    async def activate(self, vg_name: str, names: Sequence[str]) -> None:
        """Makes /dev/<vg>/<lv> usable; refreshes LVs already active (another host may
        have extended them), except those whose table this process loaded at the size
        the report still shows."""
        if not self.device_mapper:
            raise LvmUnavailable(["lvchange", "-ay", *names], None, "no device-mapper")
        fresh = vg_name not in self._lvs
        lvs = await self.lvs(vg_name)
        current = (
            n in lvs and lvs[n].active and self._table_current(vg_name, lvs[n]) for n in names
        )
        if not fresh and any(current):
            # skipping a refresh is only safe against sizes read now: the cached report
            # may predate another host's lvextend
            self.invalidate_lvs(vg_name)
            lvs = await self.lvs(vg_name)
        inactive = [n for n in names if n not in lvs or not lvs[n].active]
        stale = [
            n
            for n in names
            if n in lvs and lvs[n].active and not self._table_current(vg_name, lvs[n])
        ]

        def activated(targets: list[str]) -> LvUpdate:
            def update(lvs: dict[str, LV]) -> bool:
                if any(n not in lvs for n in targets):
                    return False
                for n in targets:
                    lvs[n] = with_active(lvs[n], True)
                return True

            return update

        if inactive:
            await self._change(
                vg_name,
                "lvchange",
                "-a",
                "y",
                *(f"{vg_name}/{n}" for n in inactive),
                update=activated(inactive),
                metadata=False,
            )
            self._mark_loaded(vg_name, inactive, True, {n: lvs[n].size for n in lvs})
        if stale:
            await self._change(
                vg_name,
                "lvchange",
                "--refresh",
                *(f"{vg_name}/{n}" for n in stale),
                update=activated(stale),
                metadata=False,
            )
            self._mark_loaded(vg_name, stale, True, {n: lvs[n].size for n in lvs})

    async def deactivate(self, vg_name: str, names: Sequence[str]) -> None:
        if not self.device_mapper or not names:
            return  # nothing can be active without device-mapper

        def deactivated(lvs: dict[str, LV]) -> bool:
            for n in names:
                if n in lvs:
                    lvs[n] = with_active(lvs[n], False)
            return True

        await self._change(
            vg_name,
            "lvchange",
            "-a",
            "n",
            *(f"{vg_name}/{n}" for n in names),
            update=deactivated,
            metadata=False,
        )
        self._mark_loaded(vg_name, names, False)
