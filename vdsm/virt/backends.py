"""What the VM operations run on: libvirt, the hook runner, storage, the run dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm.hooks.runner import RUN_DIR_ENV, HookResult, HookRunner
from vdsm.system.libvirt import Libvirt
from vdsm.virt.storage import ImagePreparer
from vdsm.virt.vm import Vm


@dataclass
class Backends:
    libvirt: Libvirt
    hooks: HookRunner
    run_dir: Path
    preparer: ImagePreparer | None = None

    def hook_env(self, vm: Vm, extra: dict[str, str] | None = None) -> dict[str, str]:
        """VM custom properties, then the point's own params (device custom
        properties...), then where the launch flags live."""
        env = dict(vm.custom)
        if extra:
            env.update(extra)
        env[RUN_DIR_ENV] = str(self.run_dir)
        return env

    async def run_hooks(
        self,
        point: str,
        vm: Vm,
        *,
        domxml: str | None = None,
        json_data: Any = None,
        extra_env: dict[str, str] | None = None,
        raise_on_error: bool = True,
    ) -> HookResult:
        return await self.hooks.run(
            point,
            domxml=domxml,
            json_data=json_data,
            env=self.hook_env(vm, extra_env),
            vm_id=vm.vm_id,
            raise_on_error=raise_on_error,
        )
