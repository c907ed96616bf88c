"""STOMP 1.2 frames: a sans-IO codec (bytes in, frames out; frames in, bytes out).

The decoder keeps its own buffer, so input may be split at any byte.  It enforces the
limits that protect the daemon (frame size, header count, header line length) and
raises `ProtocolError` with a message fit for an ERROR frame.

Wire rules (contract §1.2): `COMMAND\\n(key:value\\n)*\\n<body>\\0`; `\\r\\n` tolerated;
a lone newline between frames is a heart-beat; header escapes `\\\\ \\n \\r \\c`, a raw
`:` in a value is an error; a repeated header keeps its first value; with
`content-length` exactly that many body bytes then a mandatory NUL, without it the body
runs to the first NUL.  CONNECT and CONNECTED headers are not escaped (STOMP 1.2 §2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "DISCONNECT",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
COMMANDS = CLIENT_COMMANDS | SERVER_COMMANDS
_UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})

_ESCAPES = {b"\\\\": b"\\", b"\\n": b"\n", b"\\r": b"\r", b"\\c": b":"}


class ProtocolError(Exception):
    """The peer broke STOMP or a limit; the text goes into the ERROR frame."""


@dataclass
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __repr__(self) -> str:
        return f"Frame({self.command!r}, {self.headers!r}, <{len(self.body)} bytes>)"


@dataclass(frozen=True)
class Limits:
    max_frame_size: int = 16 * 1024 * 1024
    max_header_count: int = 64
    max_header_length: int = 8192


_SPECIAL = re.compile(r"[\\\n\r:]")


def _escape(value: str) -> bytes:
    if not _SPECIAL.search(value):
        return value.encode()
    return (
        value.encode()
        .replace(b"\\", b"\\\\")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
        .replace(b":", b"\\c")
    )


def _unescape(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        ch = raw[i : i + 1]
        if ch != b"\\":
            out += ch
            i += 1
            continue
        pair = raw[i : i + 2]
        if pair not in _ESCAPES:
            raise ProtocolError(f"Invalid escape sequence {pair!r} in header")
        out += _ESCAPES[pair]
        i += 2
    return bytes(out)


def encode(frame: Frame) -> bytes:
    """Serialise a frame; `content-length` is always set from the body."""
    escape = frame.command not in _UNESCAPED_COMMANDS
    parts = [frame.command.encode(), b"\n"]
    for key, value in frame.headers.items():
        if key == "content-length":
            continue
        if escape:
            parts += [_escape(key), b":", _escape(value), b"\n"]
        else:
            parts += [key.encode(), b":", value.encode(), b"\n"]
    parts += [b"content-length:", str(len(frame.body)).encode(), b"\n\n", frame.body, b"\0"]
    return b"".join(parts)


HEARTBEAT = b"\n"


class Decoder:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        # Where the next search for the end of the header block may start.
        self._scan = 0
        self._pending: tuple[str, dict[str, str], int] | None = None
        self._body_scan = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        if not self._buf:
            return None
        if self._pending is None and not self._read_headers():
            return None
        assert self._pending is not None
        command, headers, start = self._pending
        length_text = headers.get("content-length")
        if length_text is not None:
            length = self._content_length(length_text)
            end = start + length
            if end + 1 > self.limits.max_frame_size:
                raise ProtocolError(
                    f"Frame too large: {end + 1} bytes, limit {self.limits.max_frame_size}"
                )
            if len(self._buf) < end + 1:
                return None
            if self._buf[end] != 0:
                raise ProtocolError("Frame body not terminated by NUL")
        else:
            end = self._buf.find(b"\0", max(start, self._body_scan))
            if end < 0:
                self._body_scan = len(self._buf)
                if len(self._buf) > self.limits.max_frame_size:
                    raise ProtocolError(f"Frame too large: over {self.limits.max_frame_size} bytes")
                return None
        body = bytes(self._buf[start:end])
        del self._buf[: end + 1]
        self._pending = None
        self._scan = 0
        self._body_scan = 0
        return Frame(command, headers, body)

    def _read_headers(self) -> bool:
        buf = self._buf
        # Heart-beats (and the EOLs STOMP allows after a frame's NUL) between frames.
        skip = 0
        while skip < len(buf) and buf[skip] in (0x0A, 0x0D):
            skip += 1
        if skip:
            del buf[:skip]
            self._scan = 0
        if not buf:
            return False
        # The header block ends with an empty line: "\n\n", or "\n\r\n" with CRLFs.
        end_lf = buf.find(b"\n\n", self._scan)
        end_crlf = buf.find(b"\n\r\n", self._scan)
        if end_crlf >= 0 and (end_lf < 0 or end_crlf < end_lf):
            block_end, body_start = end_crlf, end_crlf + 3
        elif end_lf >= 0:
            block_end, body_start = end_lf, end_lf + 2
        else:
            self._check_incomplete_headers()
            self._scan = max(0, len(buf) - 2)
            return False
        if body_start > self.limits.max_frame_size:
            raise ProtocolError(f"Frame too large: over {self.limits.max_frame_size} bytes")
        lines = bytes(buf[:block_end]).split(b"\n")
        command = lines[0].rstrip(b"\r").decode("ascii", "replace")
        if command not in COMMANDS:
            raise ProtocolError(f"Unknown command {command[:40]!r}")
        if len(lines) - 1 > self.limits.max_header_count:
            raise ProtocolError(
                f"Too many headers: {len(lines) - 1}, limit {self.limits.max_header_count}"
            )
        escaped = command not in _UNESCAPED_COMMANDS
        headers: dict[str, str] = {}
        for line in lines[1:]:
            line = line.rstrip(b"\r")
            if len(line) > self.limits.max_header_length:
                raise ProtocolError(
                    f"Header too long: {len(line)} bytes, limit {self.limits.max_header_length}"
                )
            key, sep, value = line.partition(b":")
            if not sep:
                raise ProtocolError(f"Malformed header line {line[:40]!r}")
            if escaped:
                if b":" in value:
                    raise ProtocolError("Unescaped ':' in header value (use \\c)")
                key, value = _unescape(key), _unescape(value)
            try:
                name, text = key.decode(), value.decode()
            except UnicodeDecodeError:
                raise ProtocolError("Header is not valid UTF-8") from None
            headers.setdefault(name, text)
        self._pending = (command, headers, body_start)
        self._body_scan = body_start
        return True

    def _check_incomplete_headers(self) -> None:
        """Refuse a header block that can no longer fit the limits, before it completes."""
        buf = self._buf
        limits = self.limits
        if len(buf) > limits.max_frame_size:
            raise ProtocolError(f"Frame too large: over {limits.max_frame_size} bytes")
        first_nl = buf.find(b"\n")
        if first_nl >= 0:
            command = bytes(buf[:first_nl]).rstrip(b"\r").decode("ascii", "replace")
            if command not in COMMANDS:
                raise ProtocolError(f"Unknown command {command[:40]!r}")
        last_nl = buf.rfind(b"\n")
        if len(buf) - (last_nl + 1) > max(limits.max_header_length, 64):
            if last_nl < 0:
                # Still on the command line: no command is that long.
                raise ProtocolError("Command line too long")
            raise ProtocolError(f"Header too long: over {limits.max_header_length} bytes")
        if buf.count(b"\n") > limits.max_header_count + 1:
            raise ProtocolError(f"Too many headers: over {limits.max_header_count}")
        if last_nl < 0:
            # An incomplete command line that is not a prefix of any command.
            word = bytes(buf).rstrip(b"\r").decode("ascii", "replace")
            if not any(c.startswith(word) for c in COMMANDS):
                raise ProtocolError(f"Unknown command {word[:40]!r}")

    def _content_length(self, text: str) -> int:
        if not text.strip().isdigit():
            raise ProtocolError(f"Invalid content-length {text[:20]!r}")
        return int(text)
