"""vdsm-client: call any verb from the command line (contract §8.1).

    vdsm-client [-a HOST] [-p PORT] [--insecure] [--timeout S] [--flow-id ID]
                [--wait [--wait-timeout S]] [-f FILE|-] NAMESPACE VERB [name=value ...]
    vdsm-client [-a HOST] [-p PORT] [--insecure] --events

`name=value` params are sent as strings, as upstream does (the daemon coerces numbers
and booleans); typed or nested params come from a JSON object in `-f FILE` or `-f -`.
The result is printed as JSON (indent 4, sorted keys); errors go to stderr with exit 1;
usage errors exit 2.  Help for namespaces, verbs and params comes from the schema.
`--wait` follows the storage task or host job the verb started (vdsm/client/follow.py).
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from vdsm.api import schema as api_schema
from vdsm.client import follow
from vdsm.client.stomp import (
    EVENTS_QUEUE,
    CallTimeout,
    ClientError,
    ConnectionFailed,
    ServerError,
    StompClient,
    client_ssl_context,
)

DEFAULT_PORT = 54321
DEFAULT_TRUST_STORE = Path("/etc/pki/vdsm")


class UsageError(Exception):
    pass


def _trust_store_from_config() -> Path:
    """The daemon's own trust store, as /etc/vdsm/vdsm.conf names it."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read("/etc/vdsm/vdsm.conf")
        value = parser.get("vars", "trust_store_path", fallback="")
    except configparser.Error:
        value = ""
    return Path(value) if value else DEFAULT_TRUST_STORE


def _verb_help(schema: api_schema.Schema, verb: api_schema.Verb) -> str:
    lines = [verb.description or verb.name, ""]
    if verb.deprecated:
        lines.insert(1, "(deprecated)")
    if verb.params:
        lines.append("params:")
        for p in verb.params:
            optional = "" if p.required else f" (optional, default {json.dumps(p.default)})"
            lines.append(f"  {p.name}: {p.type}{optional}")
            if p.description:
                lines.append(f"      {p.description}")
        lines.append("")
        lines.append("JSON representation (for -f):")
        skeleton = {p.name: schema.skeleton(p.type) for p in verb.params}
        lines.extend("  " + line for line in json.dumps(skeleton, indent=4).splitlines())
    else:
        lines.append("This verb takes no params.")
    if verb.returns:
        lines += ["", f"returns: {verb.returns}"]
    return "\n".join(lines)


def build_parser(schema: api_schema.Schema) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vdsm-client",
        description="Invoke vdsm verbs from the command line.",
        epilog="Use 'vdsm-client NAMESPACE -h' to list its verbs and "
        "'vdsm-client NAMESPACE VERB -h' for a verb's params.",
    )
    parser.add_argument("-a", "--host", default="localhost", help="host (default localhost)")
    parser.add_argument("-p", "--port", type=int, default=DEFAULT_PORT, help="port (default 54321)")
    parser.add_argument("--insecure", action="store_true", help="plain TCP instead of TLS")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    parser.add_argument("--flow-id", help="correlation id, shown in the daemon's log")
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="read params as a JSON object from FILE, or from stdin with '-'",
    )
    parser.add_argument(
        "--trust-store",
        type=Path,
        default=None,
        metavar="DIR",
        help="certificates for TLS (default: [vars] trust_store_path of /etc/vdsm/vdsm.conf, "
        "else /etc/pki/vdsm)",
    )
    parser.add_argument(
        "--events",
        action="store_true",
        help="follow the event stream (jms.queue.events) and print one JSON line per event",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow what the verb started to its end: a storage task (a verb answering a "
        "task id, e.g. StoragePool spmStart) or a host job (a verb taking job_id, e.g. SDM "
        "copy_data); progress goes to stderr (a bar on a terminal, plain lines otherwise), "
        "the result is printed once it succeeded; exit 1 if it failed, 130 on Ctrl-C (it "
        "goes on in the daemon). On other verbs it only prints the result, with a note",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=None,
        metavar="SEC",
        help="with --wait: give up waiting after SEC seconds, exit 1 (default: no limit)",
    )
    namespaces = parser.add_subparsers(title="namespaces", dest="namespace", metavar="NAMESPACE")
    for ns, verbs in sorted(schema.namespaces().items()):
        ns_parser = namespaces.add_parser(ns, help=f"{ns} verbs", description=f"{ns} verbs")
        verb_parsers = ns_parser.add_subparsers(title="verbs", dest="verb", metavar="VERB")
        for verb in sorted(verbs, key=lambda v: v.method):
            summary = verb.description.split(". ")[0].rstrip(".")
            vp = verb_parsers.add_parser(
                verb.method,
                help=summary,
                description=_verb_help(schema, verb),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            vp.add_argument("params", nargs="*", metavar="name=value")
    return parser


def _params(args: argparse.Namespace) -> dict[str, Any]:
    if args.file is not None:
        if args.params:
            raise UsageError("-f cannot be combined with name=value params")
        try:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
            loaded = json.loads(text)
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"{args.file} is not valid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{args.file} must hold a JSON object")
        return loaded
    params: dict[str, Any] = {}
    for item in args.params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"invalid param {item!r}: expected name=value")
        params[name] = value
    return params


def _fail(message: str) -> NoReturn:
    print(f"vdsm-client: {message}", file=sys.stderr)
    sys.exit(1)


async def _connect(args: argparse.Namespace) -> StompClient:
    ssl_context = None
    if not args.insecure:
        trust_store = args.trust_store or _trust_store_from_config()
        try:
            ssl_context = client_ssl_context(trust_store)
        except (OSError, ValueError) as e:
            raise ConnectionFailed(f"cannot load TLS files from {trust_store}: {e}") from None
    return await StompClient.connect(
        args.host, args.port, ssl_context=ssl_context, timeout=args.timeout
    )


async def _call(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    client = await _connect(args)
    try:
        return await client.call(method, params, timeout=args.timeout, flow_id=args.flow_id)
    finally:
        await client.close()


class _Waiting:
    """What a --wait call is following, known to main() when Ctrl-C stops it."""

    target: follow.Target | None = None


async def _call_and_wait(
    args: argparse.Namespace,
    verb: api_schema.Verb,
    params: dict[str, Any],
    waiting: _Waiting,
) -> tuple[Any, follow.Outcome | None]:
    client = await _connect(args)
    try:
        job_id = follow.job_id_param([p.name for p in verb.params], params)
        # Subscribed before the call: a short job may be over before the answer comes.
        events = await client.subscribe(EVENTS_QUEUE) if job_id else None
        result = await client.call(verb.name, params, timeout=args.timeout, flow_id=args.flow_id)
        if job_id:
            waiting.target = follow.Target("job", job_id)
        else:
            task_id = await follow.find_task(client, verb.returns, result, args.timeout)
            if task_id is None:
                print(f"vdsm-client: --wait: {verb.name} started no task or job", file=sys.stderr)
                return result, None
            waiting.target = follow.Target("task", task_id)
        outcome = await follow.wait(
            client,
            waiting.target,
            follow.Reporter(sys.stderr),
            events=events,
            call_timeout=args.timeout,
            wait_timeout=args.wait_timeout,
        )
        return result, outcome
    finally:
        await client.close()


async def _follow_events(args: argparse.Namespace) -> None:
    client = await _connect(args)
    try:
        async for method, params in client.events():
            print(json.dumps({"event": method, "params": params}, sort_keys=True), flush=True)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    schema = api_schema.load()
    parser = build_parser(schema)
    args = parser.parse_args(argv)
    connection = (
        f"Connection to {args.host}:{args.port} with use_tls={not args.insecure}, "
        f"timeout={args.timeout:g}"
    )
    if args.events:
        if args.namespace:
            parser.error("--events takes no namespace or verb")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            asyncio.run(_follow_events(args))
        except ClientError as e:
            _fail(f"{connection} failed: {e}")
        return 0
    if not args.namespace or not getattr(args, "verb", None):
        parser.error("a namespace and a verb are required (see -h)")
    if args.wait_timeout is not None and not args.wait:
        parser.error("--wait-timeout needs --wait")
    try:
        params = _params(args)
    except UsageError as e:
        parser.error(str(e))
    method = f"{args.namespace}.{args.verb}"
    outcome: follow.Outcome | None = None
    waiting = _Waiting()
    try:
        if args.wait:
            result, outcome = asyncio.run(
                _call_and_wait(args, schema.verbs[method], params, waiting)
            )
        else:
            result = asyncio.run(_call(args, method, params))
    except KeyboardInterrupt:
        if not args.wait:
            raise
        what = f"{waiting.target.kind} {waiting.target.id}" if waiting.target else method
        print(f"vdsm-client: stopped waiting for {what}; it goes on", file=sys.stderr)
        return follow.EXIT_INTERRUPTED
    except ConnectionFailed as e:
        _fail(f"{connection} failed: {e}")
    except CallTimeout:
        _fail(f"Request {method} with args {params} timed out after {args.timeout:g} seconds")
    except ServerError as e:
        _fail(f"Command {method} with args {params} failed:\n{e}")
    if outcome is not None and not outcome.ok:
        _fail(outcome.message)
    try:
        print(json.dumps(result, indent=4, sort_keys=True), flush=True)
    except BrokenPipeError:
        # `vdsm-client ... | head`: the reader has what it wanted; silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
