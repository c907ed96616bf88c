"""The SPM mailbox: message bytes against an independent writer (tests/support/block.py,
written from upstream's layout), and the SPM's loop on real files: requests answered,
failures answered with size 0, clean messages, torn mailboxes, the event block."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from tests.support import block
from vdsm.storage import mailbox

SD = "8c5f1e3a-5b1d-4c8e-9a6f-0d3e2b1c4a5f"
VOL = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
HOSTS = 8


def test_extend_message_matches_the_independent_writer() -> None:
    message = mailbox.ExtendRequest(SD, VOL, 3072).encode()
    assert message == block.extend_message(SD, VOL, 3072)
    assert len(message) == 64
    assert message[:5] == b"1xtnd"
    assert message[5:21] == uuid.UUID(SD).bytes[::-1]
    assert message[37:53] == b"0000000000000c00"
    assert message[53:] == b"0" * 11


def test_extend_message_decodes() -> None:
    request = mailbox.ExtendRequest.decode(block.extend_message(SD, VOL, 0x1234))
    assert request == mailbox.ExtendRequest(SD, VOL, 0x1234)
    assert request.reply(False) == block.extend_message(SD, VOL, 0)
    assert request.reply(True) == block.extend_message(SD, VOL, 0x1234)


@pytest.mark.parametrize(
    "message",
    [
        b"2xtnd" + bytes(59),  # another version
        b"1xtnz" + bytes(59),  # another opcode
        b"1xtnd" + bytes(32) + b"zzzzzzzzzzzzzzzz" + bytes(11),  # size not hex
        b"1xtnd",  # short
    ],
)
def test_malformed_messages_are_refused(message: bytes) -> None:
    with pytest.raises(ValueError):
        mailbox.ExtendRequest.decode(message)


def test_sizes_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        mailbox.ExtendRequest(SD, VOL, 2**32).encode()


def test_checksum_matches_the_independent_writer() -> None:
    box = block.host_mailbox({0: block.extend_message(SD, VOL, 1), 62: b"\1" * 64})
    assert mailbox.valid_mailbox(box)
    assert box[-4:] == mailbox.checksum(box[:-4])
    assert not mailbox.valid_mailbox(box[:100] + b"\xff" + box[101:])


def mail(boxes: dict[int, bytes]) -> bytes:
    data = bytearray(HOSTS * 4096)
    for host, box in boxes.items():
        data[host * 4096 : (host + 1) * 4096] = box
    return bytes(data)


def test_new_messages_are_the_changed_ones_of_good_mailboxes() -> None:
    first = block.extend_message(SD, VOL, 1024)
    second = block.extend_message(SD, VOL, 2048)
    before = mail({2: block.host_mailbox({0: first})})
    now = mail({2: block.host_mailbox({0: first, 5: second}), 3: block.host_mailbox({})})
    remembered, found = mailbox.new_messages(before, now, HOSTS)
    assert found == [(2 * 64 + 5, second)]
    assert remembered == now


def test_a_torn_mailbox_is_ignored_then_read_whole() -> None:
    request = block.extend_message(SD, VOL, 1024)
    good = block.host_mailbox({1: request})
    torn = good[:-4] + b"\0\0\0\0"
    remembered, found = mailbox.new_messages(bytes(HOSTS * 4096), mail({4: torn}), HOSTS)
    assert found == []
    assert remembered == bytes(HOSTS * 4096)
    _, found = mailbox.new_messages(remembered, mail({4: good}), HOSTS)
    assert found == [(4 * 64 + 1, request)]


# -- the SPM's loop on real files --------------------------------------------------------


class Storage:
    """inbox/outbox files as the master's dom_md has them (16 MiB each)."""

    def __init__(self, root: Path) -> None:
        self.inbox = root / "inbox"
        self.outbox = root / "outbox"
        for path in (self.inbox, self.outbox):
            path.write_bytes(b"\xee" * 4096 * (HOSTS + 1))  # garbage of an earlier SPM
            os.truncate(path, 16 * 1024 * 1024)

    def post(self, host: int, box: bytes, event: bool = False) -> None:
        with open(self.inbox, "r+b") as f:
            f.seek(host * 4096)
            f.write(box)
            if event:
                f.seek(0)
                f.write(block.event_block())

    def reply(self, host: int, slot: int) -> bytes:
        with open(self.outbox, "rb") as f:
            f.seek(host * 4096 + slot * 64)
            return f.read(64)


async def until(check: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def test_spm_answers_extend_requests(tmp_path: Path) -> None:
    asyncio.run(_spm_answers_extend_requests(tmp_path))


async def _spm_answers_extend_requests(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    asked: list[tuple[str, str, int]] = []

    async def extend(sd: str, vol: str, size: int) -> None:
        asked.append((sd, vol, size))
        if vol != VOL:
            raise RuntimeError("no such volume")

    other = str(uuid.uuid4())
    monitor = mailbox.SpmMailbox(
        storage.inbox, storage.outbox, HOSTS, extend, monitor_interval=0.05, events_interval=None
    )
    task = asyncio.create_task(monitor.run())
    try:
        # the replies of an earlier SPM are wiped at start
        await until(lambda: storage.reply(3, 0) == bytes(64))
        request = block.extend_message(SD, VOL, 5 * 1024)
        unknown = block.extend_message(SD, other, 2048)
        storage.post(3, block.host_mailbox({0: request, 7: unknown}))
        await until(lambda: monitor.handled == 2)
        assert sorted(asked) == sorted([(SD, VOL, 5 << 30), (SD, other, 2 << 30)])
        assert storage.reply(3, 0) == request  # granted: the request itself
        assert storage.reply(3, 7) == block.extend_message(SD, other, 0)  # refused: size 0
        assert storage.reply(3, 1) == bytes(64)

        # unchanged mail is not handled twice; a clean message frees the reply slot
        await asyncio.sleep(0.2)
        assert monitor.handled == 2
        storage.post(3, block.host_mailbox({0: b"\1" * 64, 7: unknown}))
        await until(lambda: storage.reply(3, 0) == b"\1" * 64)
        assert len(asked) == 2
    finally:
        await mailbox.stop(task)
    assert task.done()


def test_the_event_block_wakes_the_spm(tmp_path: Path) -> None:
    asyncio.run(_the_event_block_wakes_the_spm(tmp_path))


async def _the_event_block_wakes_the_spm(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    done = asyncio.Event()

    async def extend(sd: str, vol: str, size: int) -> None:
        done.set()

    # a poll every 60 s: only the event can make the request seen in time
    monitor = mailbox.SpmMailbox(
        storage.inbox, storage.outbox, HOSTS, extend, monitor_interval=60, events_interval=0.05
    )
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.3)  # first look at the mail done, now waiting
        storage.post(1, block.host_mailbox({0: block.extend_message(SD, VOL, 1024)}), event=True)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await mailbox.stop(task)


def test_unreadable_mail_keeps_the_loop_alive(tmp_path: Path) -> None:
    asyncio.run(_unreadable_mail_keeps_the_loop_alive(tmp_path))


async def _unreadable_mail_keeps_the_loop_alive(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    calls = 0

    async def extend(sd: str, vol: str, size: int) -> None:
        nonlocal calls
        calls += 1

    monitor = mailbox.SpmMailbox(
        storage.inbox, storage.outbox, HOSTS, extend, monitor_interval=0.05, events_interval=None
    )
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.1)
        os.truncate(storage.inbox, 4096)  # short: the mail cannot be read
        await asyncio.sleep(0.2)
        assert not task.done()
        os.truncate(storage.inbox, 16 * 1024 * 1024)
        storage.post(2, block.host_mailbox({3: block.extend_message(SD, VOL, 1024)}))
        await until(lambda: calls == 1)
    finally:
        await mailbox.stop(task)
