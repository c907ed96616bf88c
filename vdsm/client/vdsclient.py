"""vdsClient: the legacy command line of old guides, over today's JSON-RPC (contract §8.2).

    vdsClient [-h] [-m] [-s|--SSL] [--truststore DIR] [-o] <host[:port]|0> <command> [args]

`0` is the local host on port 54321.  Commands keep their old names and map to verbs
the way upstream's compatibility table does (list -> Host.getVMList, getVdsCaps ->
Host.getCapabilities, ...).  Output is the old human-readable `\\tkey = value` style.
Exit status: 0 success, 1 the server answered an error, 255 usage or connection error.
"""

from __future__ import annotations

import asyncio
import getopt
import pprint
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm.client.stomp import ClientError, ServerError, StompClient, client_ssl_context

DEFAULT_PORT = 54321


class UsageError(Exception):
    pass


Caller = Callable[[str, dict[str, Any]], Any]


def print_dict(info: dict[str, Any], pretty: bool = True) -> None:
    for key in sorted(info):
        value = info[key]
        if pretty:
            shown = pprint.pformat(value).replace("\n", "\n\t" + " " * len(f"{key} = "))
        else:
            shown = repr(value)
        print(f"\t{key} = {shown}")


def print_conf(conf: dict[str, Any]) -> None:
    print()
    print(conf.get("vmId", ""))
    if "status" in conf:
        print(f"\tStatus = {conf['status']}")
    for key, value in conf.items():
        if key not in ("vmId", "status"):
            print(f"\t{key} = {value}")


def _one(args: list[str], what: str) -> str:
    if len(args) < 1:
        raise UsageError(f"missing {what}")
    return args[0]


async def do_list(call: Caller, args: list[str], pretty: bool) -> None:
    view, vms = "long", []
    for arg in args:
        if arg.startswith("vms:"):
            vms = [v.strip() for v in arg[4:].split(",") if v.strip()]
            if not vms:
                raise UsageError("empty VMs list")
        elif arg in ("table", "long", "ids"):
            view = arg
        else:
            raise UsageError(f'invalid argument "{arg}"')
    params: dict[str, Any] = {"fullStatus": True}
    if vms:
        params["vmList"] = vms
    vm_list = await call("Host.getVMList", params)
    if view == "table":
        stats = {s["vmId"]: s for s in await call("Host.getAllVmStats", {})}
        for conf in vm_list:
            vm_stats = stats.get(conf["vmId"])
            if vm_stats is None:
                continue  # gone between the two calls
            status = conf.get("status", "")
            if vm_stats.get("monitorResponse") == "-1":
                status += "*"
            name = vm_stats.get("vmName", conf.get("vmName", "<< NO NAME >>"))
            pid = conf.get("pid", "none")
            ips = vm_stats.get("guestIPs", "")
            print(f"{conf['vmId']:<36} {pid!s:>6}  {name:<20} {status:<20} {ips!s:<20}")
    elif view == "ids":
        for conf in vm_list:
            print(conf["vmId"])
    else:
        for conf in vm_list:
            print_conf(conf)


async def do_destroy(call: Caller, args: list[str], pretty: bool) -> None:
    await call("VM.destroy", {"vmID": _one(args, "<vmId>")})
    print("Machine destroyed")


async def do_get_vm_stats(call: Caller, args: list[str], pretty: bool) -> None:
    stats = await call("VM.getStats", {"vmID": _one(args, "<vmId>")})
    if len(args) > 1:
        print(stats[0].get(args[1]))
        return
    for conf in stats:
        print_conf(conf)


async def do_get_all_vm_stats(call: Caller, args: list[str], pretty: bool) -> None:
    for conf in await call("Host.getAllVmStats", {}):
        print_conf(conf)


async def do_get_spm_status(call: Caller, args: list[str], pretty: bool) -> None:
    status = await call("StoragePool.getSpmStatus", {"storagepoolID": _one(args, "<spUUID>")})
    for key, value in status.items():
        print(f"\t{key} = {value}")


def _info(method: str) -> Callable[[Caller, list[str], bool], Any]:
    async def command(call: Caller, args: list[str], pretty: bool) -> None:
        print_dict(await call(method, {}), pretty)

    return command


async def do_set_log_level(call: Caller, args: list[str], pretty: bool) -> None:
    await call("Host.setLogLevel", {"level": _one(args, "<level>")})
    print("Done")


async def do_connected_pools(call: Caller, args: list[str], pretty: bool) -> None:
    for pool in await call("Host.getConnectedStoragePools", {}):
        print(pool)


@dataclass(frozen=True)
class Command:
    run: Callable[[Caller, list[str], bool], Any]
    usage: str
    help: str


COMMANDS: dict[str, Command] = {
    "list": Command(
        do_list, "[table|long|ids] [vms:vmId1,vmId2]", "Lists the VMs on the host (Host.getVMList)"
    ),
    "destroy": Command(
        do_destroy, "<vmId>", "Stops the emulation and destroys the VM; not a shutdown (VM.destroy)"
    ),
    "getVdsCaps": Command(
        _info("Host.getCapabilities"), "", "Capabilities of the host (Host.getCapabilities)"
    ),
    "getVdsCapabilities": Command(
        _info("Host.getCapabilities"), "", "Capabilities of the host (Host.getCapabilities)"
    ),
    "getVdsHardwareInfo": Command(
        _info("Host.getHardwareInfo"), "", "Hardware information of the host (Host.getHardwareInfo)"
    ),
    "getVdsStats": Command(_info("Host.getStats"), "", "Statistics of the host (Host.getStats)"),
    "getVmStats": Command(
        do_get_vm_stats, "<vmId> [statName]", "Statistics of one VM (VM.getStats)"
    ),
    "getAllVmStats": Command(
        do_get_all_vm_stats, "", "Statistics of every VM (Host.getAllVmStats)"
    ),
    "getSpmStatus": Command(
        do_get_spm_status, "<spUUID>", "SPM status of a storage pool (StoragePool.getSpmStatus)"
    ),
    "getAllTasksStatuses": Command(
        _info("Host.getAllTasksStatuses"),
        "",
        "Status of every storage task (Host.getAllTasksStatuses)",
    ),
    "getAllTasksInfo": Command(
        _info("Host.getAllTasksInfo"), "", "Verb of every storage task (Host.getAllTasksInfo)"
    ),
    "getAllTasks": Command(
        _info("Host.getAllTasks"), "", "Every storage task in detail (Host.getAllTasks)"
    ),
    "getConnectedStoragePoolsList": Command(
        do_connected_pools, "", "Connected storage pools (Host.getConnectedStoragePools)"
    ),
    "setLogLevel": Command(
        do_set_log_level, "<level>", "Sets the daemon's log level (Host.setLogLevel)"
    ),
}


def usage(full: bool = True) -> None:
    print("Usage:  vdsClient [OPTIONS] <server> <command> [Command parameters]")
    print("\nOptions")
    print("-h\tDisplay this help")
    print("-m\tList supported methods and their params (Short help)")
    print("-s [--truststore path]\tConnect to server with SSL.")
    print("-o, --oneliner\tShow the key-val information in one line.")
    print("\tIf truststore path is not specified, use /etc/pki/vdsm.")
    print("\n<server> is host[:port], or 0 for this host on port 54321.")
    print("\nCommands")
    for name in sorted(COMMANDS):
        command = COMMANDS[name]
        if full:
            print(name)
            print(f"\t{command.usage}")
            print(f"\t{command.help}")
        else:
            print(f"{name}\t{command.usage}")


def parse_server(server: str) -> tuple[str, int]:
    if server == "0":
        return "localhost", DEFAULT_PORT
    if server.startswith("["):  # [ipv6]:port
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port)
    return server, DEFAULT_PORT


async def _run(
    host: str, port: int, ssl_dir: Path | None, command: Command, args: list[str], pretty: bool
) -> None:
    context = client_ssl_context(ssl_dir) if ssl_dir is not None else None
    client = await StompClient.connect(host, port, ssl_context=context, timeout=60)
    try:

        async def call(method: str, params: dict[str, Any]) -> Any:
            return await client.call(method, params, timeout=60)

        await command.run(call, args, pretty)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    use_ssl, truststore, pretty = False, Path("/etc/pki/vdsm"), True
    try:
        opts, args = getopt.getopt(
            argv, "hmso", ["help", "methods", "SSL", "truststore=", "oneliner"]
        )
    except getopt.GetoptError as e:
        print(f"ERROR - {e}")
        usage()
        return 255
    for opt, value in opts:
        if opt in ("-h", "--help"):
            usage()
            return 0
        if opt in ("-m", "--methods"):
            usage(full=False)
            return 0
        if opt in ("-s", "--SSL"):
            use_ssl = True
        elif opt == "--truststore":
            truststore = Path(value)
        elif opt in ("-o", "--oneliner"):
            pretty = False
    if len(args) < 2:
        print("ERROR - Need at least two arguments")
        usage()
        return 255
    server, name, command_args = args[0], args[1], args[2:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"ERROR - Unknown command {name}")
        usage(full=False)
        return 255
    try:
        host, port = parse_server(server)
    except ValueError:
        print(f"ERROR - bad server address {server}")
        return 255
    try:
        asyncio.run(
            _run(host, port, truststore if use_ssl else None, command, command_args, pretty)
        )
    except UsageError as e:
        print(f"Error using command: {e}\n")
        print(f"{name}\n\t{command.usage}\n\t{command.help}")
        return 255
    except ServerError as e:
        print(e.message)
        return 1
    except (ClientError, OSError) as e:
        print(f"Connection to {host}:{port} failed: {e}")
        return 255
    return 0


if __name__ == "__main__":
    sys.exit(main())
