"""The limit: a minimal asyncio STOMP server that answers each SEND with a canned reply.

It parses frames with the same sans-IO codec but does no JSON-RPC, no schema, no
logging: what is left is the cost of asyncio, sockets and framing on this machine.
"""

from __future__ import annotations

import asyncio
import sys

from vdsm.rpc.stomp import Decoder, Frame, encode

REPLY = b'{"jsonrpc": "2.0", "result": true, "id": "x"}'


class BaselineConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.decoder = Decoder()
        self.transport: asyncio.Transport | None = None
        self.subscriptions: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for frame in self.decoder.feed(data):
            if frame.command == "CONNECT":
                self.transport.write(
                    encode(Frame("CONNECTED", {"version": "1.2", "heart-beat": "0,0"}))
                )
            elif frame.command == "SUBSCRIBE":
                self.subscriptions[frame.headers["destination"]] = frame.headers["id"]
            elif frame.command == "SEND":
                reply_to = frame.headers.get("reply-to", "")
                headers = {
                    "destination": reply_to,
                    "content-type": "application/json",
                    "subscription": self.subscriptions.get(reply_to, ""),
                }
                self.transport.write(encode(Frame("MESSAGE", headers, REPLY)))


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BaselineConnection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
