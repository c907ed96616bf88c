"""The `Lease` namespace: external (VM) leases in a domain's xleases volume."""

from __future__ import annotations

from typing import Any

from vdsm.storage.leases import Leases


class LeaseAPI:
    NAMESPACE = "Lease"

    def __init__(self, *, leases: Leases) -> None:
        self.leases = leases

    async def create(self, lease: dict[str, str], metadata: dict[str, Any] | None) -> str:
        return self.leases.create(lease["sd_id"], lease["lease_id"], metadata)

    async def delete(self, lease: dict[str, str]) -> str:
        return self.leases.delete(lease["sd_id"], lease["lease_id"])

    async def info(self, lease: dict[str, str]) -> dict[str, Any]:
        return await self.leases.info(lease["sd_id"], lease["lease_id"])

    async def status(self, lease: dict[str, str]) -> dict[str, Any]:
        return await self.leases.status(lease["sd_id"], lease["lease_id"])
