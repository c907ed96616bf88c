"""vdsm: the oVirt host agent, reimplemented on asyncio."""

__version__ = "0.1.0"

# The upstream VDSM release line whose engine-facing contract this daemon implements;
# reported as software_version so engine feature checks see a compatible host.
COMPAT_VERSION = "4.50.0"
