"""The one exception tree of the daemon.

Every error a verb can answer is a subclass of `VdsmError` carrying the contract's
code and default text (contract §2.3).  Domain code raises these; only the RPC edge
turns them into JSON-RPC error objects, using `code` and `str(error)`.

The text follows upstream's three shapes, because engine logs and scripts parse them:

    NoSuchVM()                      -> "Virtual machine does not exist"
    NoSuchVM(vmId="x")              -> "Virtual machine does not exist: {'vmId': 'x'}"
    StorageDomainDoesNotExist("x")  -> "Storage domain does not exist: ('x',)"

Classes are declared with keyword arguments (`class X(VdsmError, code=.., message=..)`)
so the table of codes reads as a table.  Families live in submodules (storage.py, spm.py) and
are re-exported here: `from vdsm import errors; errors.StorageDomainDoesNotExist`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class VdsmError(Exception):
    code: ClassVar[int] = 100
    message: ClassVar[str] = "General Exception"
    # True for errors that are the caller's fault: logged without a traceback.
    expected: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        code: int | None = None,
        message: str | None = None,
        expected: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if message is not None:
            cls.message = message
        if expected is not None:
            cls.expected = expected

    def __init__(self, *args: object, **context: object) -> None:
        super().__init__(*args)
        self.context = context

    def __str__(self) -> str:
        if self.context:
            return f"{self.message}: {self.context!r}"
        if self.args:
            return f"{self.message}: {self.args!r}"
        return self.message

    def info(self) -> dict[str, Any]:
        """The `{"code", "message"}` pair upstream calls a status."""
        return {"code": self.code, "message": str(self)}


class GeneralException(VdsmError, code=100, message="General Exception"):
    """Wraps an unexpected Python error at the edge."""


# -- JSON-RPC protocol errors (raised by the RPC edge and the schema validator) --------


class JsonRpcError(VdsmError, expected=True):
    pass


class ParseError(JsonRpcError, code=-32700, message="Invalid JSON was received by the server"):
    pass


class InvalidRequest(JsonRpcError, code=-32600, message="Invalid request"):
    pass


class MethodNotFound(
    JsonRpcError, code=-32601, message="The method does not exist or is not available"
):
    pass


class InvalidParams(JsonRpcError, code=-32602, message="Invalid method parameter(s)"):
    pass


class InternalError(JsonRpcError, code=-32603, message="Internal JSON-RPC error"):
    expected = False


# -- Core errors (upstream common/exception.py) -----------------------------------------


class NoSuchVM(VdsmError, code=1, message="Virtual machine does not exist", expected=True):
    pass


class AccessTimeout(VdsmError, code=3, message="Image repository access timeout"):
    pass


class VMExists(VdsmError, code=4, message="Virtual machine already exists", expected=True):
    pass


class UnsupportedVMType(VdsmError, code=5, message="Unsupported VM type"):
    pass


class VMIsDown(VdsmError, code=6, message="Virtual machine is down", expected=True):
    pass


class CannotCreateVM(VdsmError, code=9, message="Error creating the requested VM"):
    pass


class NoConnectionToPeer(VdsmError, code=10, message="Could not connect to peer VDS"):
    pass


class MissingParameter(VdsmError, code=11, message="Missing required parameter", expected=True):
    pass


class ResourceUnavailable(VdsmError, code=40, message="Resource unavailable"):
    pass


class MethodNotImplemented(VdsmError, code=44, message="Not implemented", expected=True):
    pass


class CannotRetrieveHWInfo(VdsmError, code=57, message="Failed to read hardware information"):
    pass


class NoSuchJob(VdsmError, code=66, message="Job Id does not exists", expected=True):
    pass


class JobExists(VdsmError, code=69, message="Job id already exists", expected=True):
    pass


class UnsupportedOperation(VdsmError, code=75, message="Operation not supported", expected=True):
    pass


class HookFailed(VdsmError, code=78, message="Hook error"):
    pass


class InvalidParameter(VdsmError, code=91, message="Invalid parameter", expected=True):
    pass


class RecoveryInProgress(
    VdsmError, code=99, message="Recovering from crash or Initializing", expected=True
):
    pass


class InvalidConfiguration(VdsmError, code=101, message="Invalid configuration value"):
    pass


class HookError(VdsmError, code=1500, message="Hook Error"):
    pass


# -- Errors that never reach the wire ----------------------------------------------------


class ConfigError(Exception):
    """A configuration file that cannot be used; stops the daemon at start."""

    def __init__(self, path: str, section: str, key: str, reason: str) -> None:
        super().__init__(path, section, key, reason)
        self.path = path
        self.section = section
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: [{self.section}] {self.key}: {self.reason}"


# The families, re-exported so that every error is `vdsm.errors.<Name>`.
from vdsm.errors.block import *  # noqa: E402, F403
from vdsm.errors.lvm import *  # noqa: E402, F403
from vdsm.errors.network import *  # noqa: E402, F403
from vdsm.errors.spm import *  # noqa: E402, F403
from vdsm.errors.storage import *  # noqa: E402, F403
from vdsm.errors.virt import *  # noqa: E402, F403
from vdsm.errors.volume import *  # noqa: E402, F403
