"""The SPM mailbox: how hosts ask the SPM to grow a thin volume on a block domain.

Only the SPM changes LVM metadata, so a host whose VM fills a thin (COW) LV writes an
extend request into the master domain's mailbox and waits for the SPM's reply.  The
layout is upstream's, byte for byte, so hosts running upstream VDSM are served too:

- The master domain's `inbox` volume holds the hosts' requests and `outbox` the SPM's
  replies ("in" and "out" as the SPM sees them), one 4 KiB mailbox per host at
  host id x 4 KiB.  Host ids start at 1: mailbox 0 of `inbox` is the event block.
- A mailbox is 63 messages of 64 bytes and a last 64-byte slot whose final 4 bytes are
  the little-endian sum of the 4092 bytes before them.  A host's mailbox with a wrong
  sum is ignored (a torn write); the SPM's replies carry no sum, as upstream's don't.
- A message: version `1`, opcode `xtnd`, the domain and the volume UUIDs as 16-byte
  little-endian integers, the wanted size in MiB as 16 hex digits, `0` padding.  A
  first byte 0 is an empty slot; 64 bytes of 0x01 mean "done with this slot".
- The reply goes to the same message slot of the host's mailbox in `outbox`: the
  request itself when the volume now has at least the wanted size, or with size 0
  when it could not be grown.
- A host that writes a request also writes `\\0evt` and a random UUID into the event
  block; the SPM reads that block every `events_interval` seconds and looks at the
  mailboxes at once when it changed, and every `monitor_interval` seconds anyway.

A request is handled once: the SPM remembers the mail it last read and acts only on
messages that changed.  Mail present when the SPM starts is handled (extending is
idempotent: an LV already large enough is left alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from vdsm.storage import directio
from vdsm.system.blocking import BlockingCallTimeout, Bulkhead

log = logging.getLogger("vdsm.storage.mailbox")

MAILBOX_SIZE = 4096
MESSAGE_SIZE = 64
SLOTS_PER_MAILBOX = MAILBOX_SIZE // MESSAGE_SIZE
MESSAGES_PER_MAILBOX = SLOTS_PER_MAILBOX - 1  # the last slot ends with the checksum
CHECKSUM_SIZE = 4
VERSION = b"1"
EXTEND = b"xtnd"
EVENT = b"\0evt"
CLEAN_MESSAGE = b"\1" * MESSAGE_SIZE
EMPTY_MAILBOX = bytes(MAILBOX_SIZE)
SIZE_DIGITS = 16
MAX_SIZE_MIB = 0xFFFFFFFF

_DOMAIN_AT = 1 + len(EXTEND)
_VOLUME_AT = _DOMAIN_AT + 16
_SIZE_AT = _VOLUME_AT + 16


def checksum(data: bytes) -> bytes:
    return (sum(data) & 0xFFFFFFFF).to_bytes(CHECKSUM_SIZE, "little")


def pack_uuid(text: str) -> bytes:
    return uuid.UUID(text).int.to_bytes(16, "little")


def unpack_uuid(raw: bytes) -> str:
    return str(uuid.UUID(int=int.from_bytes(raw, "little")))


@dataclass(frozen=True)
class ExtendRequest:
    domain: str
    volume: str
    size_mib: int

    def encode(self) -> bytes:
        if not 0 <= self.size_mib <= MAX_SIZE_MIB:
            raise ValueError(f"size {self.size_mib} MiB out of range")
        size = b"%016x" % self.size_mib
        payload = VERSION + EXTEND + pack_uuid(self.domain) + pack_uuid(self.volume) + size
        return payload.ljust(MESSAGE_SIZE, b"0")

    @classmethod
    def decode(cls, message: bytes) -> ExtendRequest:
        """ValueError for a message that is not a well-formed extend request."""
        if len(message) != MESSAGE_SIZE or message[:_DOMAIN_AT] != VERSION + EXTEND:
            raise ValueError(f"not an extend request: {message!r}")
        size = message[_SIZE_AT : _SIZE_AT + SIZE_DIGITS]
        return cls(
            domain=unpack_uuid(message[_DOMAIN_AT:_VOLUME_AT]),
            volume=unpack_uuid(message[_VOLUME_AT:_SIZE_AT]),
            size_mib=int(size, 16),
        )

    def reply(self, granted: bool) -> bytes:
        return (self if granted else ExtendRequest(self.domain, self.volume, 0)).encode()


def valid_mailbox(mailbox: bytes) -> bool:
    return mailbox[-CHECKSUM_SIZE:] == checksum(mailbox[:-CHECKSUM_SIZE])


def new_messages(
    previous: bytes, current: bytes, hosts: int
) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The (message id, message) pairs of `current` that differ from `previous`, in
    mailboxes with a right checksum; and `current` as it will be remembered (a mailbox
    with a wrong checksum counts as empty, so its next good version is read whole).
    A message id is host x 64 + slot, the place of the message in the mail."""
    remembered = bytearray(current)
    found: list[tuple[int, bytes]] = []
    for host in range(hosts):
        start = host * MAILBOX_SIZE
        mailbox = current[start : start + MAILBOX_SIZE]
        slots = range(MESSAGES_PER_MAILBOX)
        if all(mailbox[i * MESSAGE_SIZE] == 0 for i in slots):
            continue  # most mailboxes are empty: cheaper than summing 4 KiB
        if not valid_mailbox(mailbox):
            log.warning("mailbox of host %d has a wrong checksum: ignored", host)
            remembered[start : start + MAILBOX_SIZE] = EMPTY_MAILBOX
            continue
        for i in slots:
            at = start + i * MESSAGE_SIZE
            message = current[at : at + MESSAGE_SIZE]
            if message[0] != 0 and message != previous[at : at + MESSAGE_SIZE]:
                found.append((host * SLOTS_PER_MAILBOX + i, message))
    return bytes(remembered), found


@dataclass(frozen=True)
class MailboxSettings:
    monitor_interval: float = 2.0
    events_interval: float | None = 0.5  # None: no event block, polls only
    io_timeout: float = 10.0


# Grows one volume: (domain uuid, volume uuid, size in bytes).  Raises when it cannot.
Extend = Callable[[str, str, int], Awaitable[None]]


class SpmMailbox:
    """The SPM's side: reads the hosts' requests, extends, replies.  `run()` until
    cancelled (spmStop)."""

    def __init__(
        self,
        inbox: Path,
        outbox: Path,
        hosts: int,
        extend: Extend,
        *,
        monitor_interval: float = 2.0,
        events_interval: float | None = 0.5,
        io_timeout: float = 10.0,
    ) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.hosts = hosts
        self._extend = extend
        self.monitor_interval = monitor_interval
        self.events_interval = (
            None if events_interval is None else min(events_interval, monitor_interval)
        )
        # Its own thread slot: a mailbox on storage that hangs stalls only the mailbox.
        self._io = Bulkhead(f"mailbox {inbox}", 1, io_timeout)
        self._incoming = bytes(hosts * MAILBOX_SIZE)
        self._outgoing = bytearray(hosts * MAILBOX_SIZE)
        self._writing = asyncio.Lock()
        self._last_event = bytes(MESSAGE_SIZE)
        self.handled = 0  # requests answered, for the logs and the tests

    async def run(self) -> None:
        log.info("SPM mailbox: serving %d hosts from %s", self.hosts, self.inbox)
        # Replies of an earlier SPM are stale: the hosts asked again or gave up.
        await self._io.run(directio.write_at, self.outbox, 0, bytes(self._outgoing))
        async with asyncio.TaskGroup() as requests:
            while True:
                try:
                    await self._check(requests)
                except (OSError, BlockingCallTimeout) as e:
                    log.warning("SPM mailbox: cannot read %s: %s", self.inbox, e)
                await self._wait_for_event()

    async def _check(self, requests: asyncio.TaskGroup) -> None:
        mail = await self._io.run(directio.read_at, self.inbox, 0, len(self._incoming))
        if len(mail) != len(self._incoming):
            raise OSError(f"short read of the mailboxes: {len(mail)} bytes")
        self._incoming, messages = new_messages(self._incoming, mail, self.hosts)
        for msg_id, message in messages:
            if message == CLEAN_MESSAGE:
                # the host read our reply: its slot is free again
                await self._send(msg_id, CLEAN_MESSAGE)
            elif message[1 : 1 + len(EXTEND)] == EXTEND:
                requests.create_task(self._handle(msg_id, message), name=f"mailbox {msg_id}")
            else:
                log.error(
                    "SPM mailbox: unknown message %r from host %d",
                    message[:5],
                    msg_id // SLOTS_PER_MAILBOX,
                )

    async def _handle(self, msg_id: int, message: bytes) -> None:
        try:
            request = ExtendRequest.decode(message)
        except ValueError as e:
            log.error("SPM mailbox: host %d: %s", msg_id // SLOTS_PER_MAILBOX, e)
            return
        granted = False
        try:
            log.info(
                "SPM mailbox: host %d asks to extend %s/%s to %d MiB",
                msg_id // SLOTS_PER_MAILBOX,
                request.domain,
                request.volume,
                request.size_mib,
            )
            await self._extend(request.domain, request.volume, request.size_mib * 1024 * 1024)
            granted = True
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.error("SPM mailbox: cannot extend %s/%s: %s", request.domain, request.volume, e)
        try:
            await self._send(msg_id, request.reply(granted))
            self.handled += 1
        except (OSError, BlockingCallTimeout) as e:
            log.error("SPM mailbox: cannot reply to host %d: %s", msg_id // SLOTS_PER_MAILBOX, e)

    async def _send(self, msg_id: int, message: bytes) -> None:
        """Writes the host's whole mailbox: replies are sector-aligned 4 KiB writes."""
        async with self._writing:
            at = msg_id * MESSAGE_SIZE
            self._outgoing[at : at + MESSAGE_SIZE] = message
            start = at - at % MAILBOX_SIZE
            mailbox = bytes(self._outgoing[start : start + MAILBOX_SIZE])
            await self._io.run(directio.write_at, self.outbox, start, mailbox)

    async def _wait_for_event(self) -> None:
        """Sleeps until the next poll, or less when a host signals new mail."""
        if self.events_interval is None:
            await asyncio.sleep(self.monitor_interval)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.monitor_interval
        while (left := deadline - loop.time()) > self.events_interval:
            await asyncio.sleep(self.events_interval)
            try:
                block = await self._io.run(directio.read_at, self.inbox, 0, MAILBOX_SIZE)
            except (OSError, BlockingCallTimeout) as e:
                log.warning("SPM mailbox: cannot read the event block: %s", e)
                continue
            event = block[:MESSAGE_SIZE]
            if event != self._last_event:
                self._last_event = event
                if event[: len(EVENT)] == EVENT:
                    return
        await asyncio.sleep(max(left, 0))


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
