"""setupNetworks errors, with upstream's codes (network/errors.py): 21-32, and 10 for a
failed connectivity check.

Upstream answers these with a free text naming what is wrong ("Bond bond0 does not
exist"), not a fixed message: the text given to the constructor is the whole message.
"""

from __future__ import annotations

from vdsm.errors import HookFailed, NoConnectionToPeer, VdsmError

__all__ = [
    "ConnectivityCheckFailed",
    "NetworkAddressError",
    "NetworkBondingError",
    "NetworkBridgeError",
    "NetworkConfigError",
    "NetworkHookFailed",
    "NetworkIfupFailed",
    "NetworkNicError",
    "NetworkParamsError",
    "NetworkUsedBond",
    "NetworkUsedNic",
    "NetworkVlanError",
]


class NetworkConfigError(VdsmError, code=21, message="Bad network parameters", expected=True):
    def __init__(self, text: str = "", **context: object) -> None:
        super().__init__(text, **context)
        self.text = text

    def __str__(self) -> str:
        return self.text or self.message


class NetworkParamsError(NetworkConfigError, code=21):
    pass


class NetworkAddressError(NetworkConfigError, code=22, message="Bad address"):
    pass


class NetworkNicError(NetworkConfigError, code=23, message="Bad nic"):
    pass


class NetworkUsedNic(NetworkConfigError, code=24, message="Nic already in use"):
    pass


class NetworkBondingError(NetworkConfigError, code=25, message="Bad bonding"):
    pass


class NetworkVlanError(NetworkConfigError, code=26, message="Bad vlan"):
    pass


class NetworkBridgeError(NetworkConfigError, code=27, message="Bad bridge"):
    pass


class NetworkIfupFailed(NetworkConfigError, code=29, message="Failed to bring interface up"):
    # A kernel refusal in the middle of a transaction: not the caller's fault alone.
    expected = False


class NetworkUsedBond(NetworkConfigError, code=31, message="Bond already in use"):
    pass


class ConnectivityCheckFailed(NoConnectionToPeer, message="connectivity check failed"):
    """Code 10: no client reached the host in time after the change; rolled back."""


class NetworkHookFailed(HookFailed):
    """Code 78: a before_network_setup hook failed; the text is its error output."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"Hook error: {self.text}"
