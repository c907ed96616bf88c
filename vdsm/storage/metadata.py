"""The storage domain metadata format (contract §4.2), byte-compatible with upstream.

A domain's metadata is a set of `KEY=VALUE` lines.  They are written sorted by key and
sealed by a last line `_SHA_CKSUM=<sha1 hex>`, the SHA-1 of the sorted `KEY=VALUE`
strings concatenated with no separator, each one encoded to ASCII with characters
outside ASCII written as XML character references (`é` -> `&#233;`).  File domains
keep the lines, UTF-8 and newline-terminated, in `dom_md/metadata`; block domains keep
each line as a VG tag `MDT_<line>` with an escape for characters LVM refuses.

Reading is lenient where upstream is: NULs padding the end (direct I/O, block slots)
are dropped, lines without `=` are ignored, keys are trimmed but values are not, the
last of duplicate keys wins.  Metadata without a checksum line is trusted as it is (old
domains, hand-made fixtures), as is metadata holding nothing but a checksum; a checksum
that does not match is `MetaDataSealIsBroken` (752).

Everything here is synchronous and small: callers run the file functions in the
bulkhead of the domain they belong to.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from vdsm import errors

log = logging.getLogger("vdsm.storage.metadata")

CHECKSUM_KEY = "_SHA_CKSUM"
VG_TAG_PREFIX = "MDT_"

# Upstream creates the file through a helper that opens it 0664 under vdsm's umask
# (systemd's default 022), so domains on disk carry 0644.  We set it explicitly so the
# result does not depend on the umask this daemon happens to run with.
FILE_MODE = 0o644

# str.splitlines() ends a line at any of these, so none may appear inside a key or a
# value: upstream's reader would cut the line there and the seal would break.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00]")

_TAG_UNSAFE = re.compile(r"[^a-zA-Z0-9_+.\-/=!:#]")
_TAG_ESCAPE = re.compile(r"&([0-9]+)&")

# Direct I/O wants buffers, offsets and lengths aligned to the logical block size;
# 4 KiB covers 512-byte and 4K storage.  mmap buffers are page-aligned.
_DIRECT_CHUNK = 64 * 1024


def checksum(values: Mapping[str, str]) -> str:
    """The seal upstream writes for `values` (without the checksum key itself)."""
    digest = hashlib.sha1()
    for line in _sorted_lines(values):
        digest.update(line.encode("ascii", "xmlcharrefreplace"))
    return digest.hexdigest()


def serialize_lines(values: Mapping[str, str]) -> list[str]:
    """The sealed lines, in the order they are written (sorted, checksum last)."""
    _validate(values)
    lines = _sorted_lines(values)
    lines.append(f"{CHECKSUM_KEY}={checksum(values)}")
    return lines


def serialize(values: Mapping[str, str]) -> bytes:
    """The content of a file domain's `dom_md/metadata`."""
    return b"".join(line.encode("utf-8") + b"\n" for line in serialize_lines(values))


def parse_lines(lines: Iterable[str]) -> dict[str, str]:
    """Parse and verify metadata lines (file lines or decoded VG tags)."""
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            if line:
                log.warning("Ignoring metadata line without '=': %r", line)
            continue
        values[key.strip()] = value
    declared = values.pop(CHECKSUM_KEY, None)
    if not values:
        return values
    if declared is None:
        log.warning("Metadata has no checksum, trusting it as it is")
        return values
    computed = checksum(values)
    if declared != computed:
        raise errors.MetaDataSealIsBroken(declared, computed)
    return values


def parse(data: bytes) -> dict[str, str]:
    """Parse the content of a file domain's metadata file."""
    try:
        text = data.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError as e:
        raise errors.MetaDataGeneralError(f"metadata is not UTF-8: {e}") from None
    return parse_lines(text.splitlines())


def read_file(path: Path) -> dict[str, str]:
    """Read and verify a metadata file, bypassing the page cache as upstream does, so
    a change another host made on shared storage is seen at once.

    A missing file raises FileNotFoundError: what it means (no such domain, a domain
    half created) is the caller's to say.
    """
    return parse(read_direct(path))


def write_file(path: Path, values: Mapping[str, str], *, mode: int = FILE_MODE) -> None:
    """Replace a metadata file atomically: write `<name>.new`, fsync it, rename it over
    the old one.  A crash leaves either the old file or the new one, never a mix."""
    data = serialize(values)
    tmp = path.with_name(path.name + ".new")
    try:
        _write_synced(tmp, data, mode)
    except OSError as e:
        # NFS may answer ESTALE for a handle of a file another client replaced; one
        # retry opens the name afresh, as upstream does.
        if e.errno != errno.ESTALE:
            raise
        _write_synced(tmp, data, mode)
    os.rename(tmp, path)
    fsync_dir(path.parent)


def to_vg_tags(values: Mapping[str, str]) -> list[str]:
    """The VG tags of a block domain holding `values` (sealed), in line order."""
    return [VG_TAG_PREFIX + encode_tag(line) for line in serialize_lines(values)]


def from_vg_tags(tags: Iterable[str]) -> dict[str, str]:
    """Parse and verify the metadata among a VG's tags; other tags are ignored."""
    return parse_lines(
        decode_tag(tag[len(VG_TAG_PREFIX) :]) for tag in tags if tag.startswith(VG_TAG_PREFIX)
    )


def has_line_break(text: str) -> bool:
    """Whether `text` would not survive as one metadata line."""
    return _LINE_BREAKS.search(text) is not None


def encode_tag(text: str) -> str:
    """Escape what LVM does not accept in a tag as `&<decimal code point>&`."""
    return _TAG_UNSAFE.sub(lambda m: f"&{ord(m.group())}&", text)


def decode_tag(text: str) -> str:
    return _TAG_ESCAPE.sub(lambda m: chr(int(m.group(1))), text)


# -- small file helpers, shared with the other on-disk formats of this package ----------


def read_direct(path: Path) -> bytes:
    """Read a whole (small) file with O_DIRECT; buffered when the file system refuses
    direct I/O (EINVAL: tmpfs before Linux 6.6, some FUSE file systems)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return path.read_bytes()
    try:
        chunks: list[bytes] = []
        with mmap.mmap(-1, _DIRECT_CHUNK) as buf:
            view = memoryview(buf)
            try:
                while True:
                    n = os.readv(fd, [view])
                    if n == 0:
                        break
                    chunks.append(bytes(view[:n]))
                    if n < _DIRECT_CHUNK:
                        break  # a short direct read is the end of the file
            finally:
                view.release()
        return b"".join(chunks)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sorted_lines(values: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in sorted(values.items())]


def _validate(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata keys and values are strings: {key!r}={value!r}")
        if not key or key != key.strip() or "=" in key or key == CHECKSUM_KEY:
            raise ValueError(f"invalid metadata key {key!r}")
        if has_line_break(key) or has_line_break(value):
            raise ValueError(f"metadata {key} holds a line break or NUL: {value!r}")
