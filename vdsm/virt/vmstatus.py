"""VM status strings, exit codes and exit reasons exactly as the engine reads them
(contract §7.2)."""

from __future__ import annotations

import enum

WAIT_FOR_LAUNCH = "WaitForLaunch"
POWERING_UP = "Powering up"
UP = "Up"
PAUSED = "Paused"
POWERING_DOWN = "Powering down"
REBOOT_IN_PROGRESS = "RebootInProgress"
DOWN = "Down"
MIGRATION_SOURCE = "Migration Source"
MIGRATION_DESTINATION = "Migration Destination"
SAVING_STATE = "Saving State"
RESTORING_STATE = "Restoring state"

# Seconds a started VM stays "Powering up" without a guest agent saying it is up.
POWERING_UP_PERIOD = 60.0


class ExitCode(enum.IntEnum):
    NORMAL = 0
    ERROR = 1


class ExitReason(enum.IntEnum):
    SUCCESS = 0
    GENERIC_ERROR = 1
    LOST_QEMU_CONNECTION = 2
    LIBVIRT_START_FAILED = 3
    MIGRATION_SUCCEEDED = 4
    SAVE_STATE_SUCCEEDED = 5
    ADMIN_SHUTDOWN = 6
    USER_SHUTDOWN = 7
    MIGRATION_FAILED = 8
    LIBVIRT_DOMAIN_MISSING = 9
    DESTROYED_ON_STARTUP = 10
    HOST_SHUTDOWN = 11
    POSTCOPY_MIGRATION_FAILED = 12
    DESTROYED_ON_REBOOT = 13
    DESTROYED_ON_PAUSE_TIMEOUT = 14


# Upstream's default texts, spelling included: engine matches some of them.
EXIT_MESSAGES: dict[ExitReason, str] = {
    ExitReason.SUCCESS: "VM terminated succesfully",
    ExitReason.GENERIC_ERROR: "VM terminated with error",
    ExitReason.LOST_QEMU_CONNECTION: "Lost connection with qemu process",
    ExitReason.LIBVIRT_START_FAILED: "failed to start libvirt vm",
    ExitReason.MIGRATION_SUCCEEDED: "Migration succeeded",
    ExitReason.SAVE_STATE_SUCCEEDED: "SaveState succeeded",
    ExitReason.ADMIN_SHUTDOWN: "Admin shut down from the engine",
    ExitReason.USER_SHUTDOWN: "User shut down from within the guest",
    ExitReason.MIGRATION_FAILED: "VM failed to migrate",
    ExitReason.LIBVIRT_DOMAIN_MISSING: "Failed to find the libvirt domain",
    ExitReason.DESTROYED_ON_STARTUP: "VM destroyed during the startup",
    ExitReason.HOST_SHUTDOWN: "VM has been terminated on the host",
    ExitReason.POSTCOPY_MIGRATION_FAILED: "Migration failed in post-copy",
    ExitReason.DESTROYED_ON_REBOOT: "Down as a part of the reboot process",
    ExitReason.DESTROYED_ON_PAUSE_TIMEOUT: "Down because paused for too long",
}

# Pause codes reported with "Paused".
PAUSE_NOERR = "NOERR"
PAUSE_EIO = "EIO"
PAUSE_ENOSPC = "ENOSPC"
PAUSE_EPERM = "EPERM"
PAUSE_EOTHER = "EOTHER"
