"""The sans-IO STOMP codec: framing rules, escapes, limits, and any byte split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdsm.rpc.stomp import Decoder, Frame, Limits, ProtocolError, encode


def decode_all(data: bytes, limits: Limits | None = None) -> list[Frame]:
    return Decoder(limits).feed(data)


def test_send_frame_with_content_length():
    data = b"SEND\ndestination:jms.topic.vdsm_requests\ncontent-length:5\n\nhello\0"
    [frame] = decode_all(data)
    assert frame.command == "SEND"
    assert frame.headers == {"destination": "jms.topic.vdsm_requests", "content-length": "5"}
    assert frame.body == b"hello"


def test_body_with_nul_bytes_needs_content_length():
    body = b"a\0b"
    [frame] = decode_all(b"SEND\ncontent-length:3\n\n" + body + b"\0")
    assert frame.body == body


def test_body_without_content_length_runs_to_nul():
    [frame] = decode_all(b"SEND\ndestination:x\n\nabc\0")
    assert frame.body == b"abc"


def test_crlf_line_endings_are_tolerated():
    [frame] = decode_all(b"CONNECT\r\naccept-version:1.2\r\nheart-beat:0,24000\r\n\r\n\0")
    assert frame.headers == {"accept-version": "1.2", "heart-beat": "0,24000"}


def test_mixed_line_endings():
    [frame] = decode_all(b"SEND\ndestination:x\n\r\nbody\0")
    assert frame.body == b"body"


def test_heartbeats_between_frames_are_skipped():
    frames = decode_all(b"\n\n\r\nSEND\n\n\0\n\nSEND\n\n\0\n")
    assert [f.command for f in frames] == ["SEND", "SEND"]


def test_header_escapes_decode():
    [frame] = decode_all(b"SEND\nkey\\cname:a\\nb\\\\c\\rd\\ce\n\n\0")
    assert frame.headers == {"key:name": "a\nb\\c\rd:e"}


def test_connect_headers_are_not_unescaped():
    [frame] = decode_all(b"CONNECT\nhost:a\\nb\n\n\0")
    assert frame.headers == {"host": "a\\nb"}


def test_raw_colon_in_value_is_rejected():
    with pytest.raises(ProtocolError, match="Unescaped"):
        decode_all(b"SEND\ndestination:a:b\n\n\0")


def test_bad_escape_is_rejected():
    with pytest.raises(ProtocolError, match="escape"):
        decode_all(b"SEND\ndestination:a\\tb\n\n\0")


def test_repeated_header_keeps_first():
    [frame] = decode_all(b"SEND\nid:1\nid:2\n\n\0")
    assert frame.headers["id"] == "1"


def test_unknown_command_is_rejected_early():
    decoder = Decoder()
    with pytest.raises(ProtocolError, match="Unknown command"):
        decoder.feed(b"GET / HT")


def test_missing_nul_after_counted_body_is_rejected():
    with pytest.raises(ProtocolError, match="NUL"):
        decode_all(b"SEND\ncontent-length:2\n\nabc\0")


def test_invalid_content_length_is_rejected():
    with pytest.raises(ProtocolError, match="content-length"):
        decode_all(b"SEND\ncontent-length:-1\n\n\0")


def test_frame_size_limit_on_declared_length():
    decoder = Decoder(Limits(max_frame_size=1024))
    with pytest.raises(ProtocolError, match="too large"):
        decoder.feed(b"SEND\ncontent-length:100000\n\n")


def test_frame_size_limit_without_length():
    decoder = Decoder(Limits(max_frame_size=1024))
    decoder.feed(b"SEND\n\n")
    with pytest.raises(ProtocolError, match="too large"):
        decoder.feed(b"x" * 2000)


def test_header_count_limit():
    headers = b"".join(b"h%d:v\n" % i for i in range(10))
    with pytest.raises(ProtocolError, match="Too many headers"):
        decode_all(b"SEND\n" + headers + b"\n\0", Limits(max_header_count=5))


def test_header_count_limit_before_block_completes():
    decoder = Decoder(Limits(max_header_count=5))
    with pytest.raises(ProtocolError, match="Too many headers"):
        decoder.feed(b"SEND\n" + b"h:v\n" * 20)


def test_header_length_limit_before_line_completes():
    decoder = Decoder(Limits(max_header_length=100))
    with pytest.raises(ProtocolError, match="Header too long"):
        decoder.feed(b"SEND\ndestination:" + b"x" * 500)


def test_encode_sets_content_length_and_escapes():
    data = encode(Frame("MESSAGE", {"destination": "a:b\nc", "content-length": "999"}, b"xy"))
    assert data == b"MESSAGE\ndestination:a\\cb\\nc\ncontent-length:2\n\nxy\0"


def test_encode_connected_is_not_escaped():
    data = encode(Frame("CONNECTED", {"version": "1.2", "heart-beat": "0,24000"}))
    assert data.startswith(b"CONNECTED\nversion:1.2\nheart-beat:0,24000\n")


def test_buffered_reports_partial_frame():
    decoder = Decoder()
    assert decoder.feed(b"SEND\ncontent-length:4\n\nab") == []
    assert decoder.buffered > 0
    [frame] = decoder.feed(b"cd\0")
    assert frame.body == b"abcd"
    assert decoder.buffered == 0


header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    max_size=20,
)
frames = st.builds(
    Frame,
    command=st.sampled_from(["SEND", "SUBSCRIBE", "MESSAGE", "ERROR", "RECEIPT"]),
    headers=st.dictionaries(
        header_text.filter(lambda k: k and k != "content-length"), header_text, max_size=6
    ),
    body=st.binary(max_size=200),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_roundtrip_survives_any_split(sent, data):
    stream = b"".join(encode(f) + data.draw(st.sampled_from([b"", b"\n", b"\r\n"])) for f in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = Decoder()
    received: list[Frame] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        received += decoder.feed(stream[start:cut])
        start = cut
    assert [(f.command, f.body) for f in received] == [(f.command, f.body) for f in sent]
    for got, want in zip(received, sent, strict=True):
        expected = dict(want.headers)
        expected["content-length"] = str(len(want.body))
        assert got.headers == expected
    assert decoder.buffered == 0


def test_every_single_byte_split():
    stream = encode(Frame("SEND", {"destination": "q", "reply-to": "r"}, b'{"a": 1}')) * 3
    decoder = Decoder()
    received = []
    for i in range(len(stream)):
        received += decoder.feed(stream[i : i + 1])
    assert [f.body for f in received] == [b'{"a": 1}'] * 3


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(garbage):
    decoder = Decoder(Limits(max_frame_size=4096, max_header_count=8, max_header_length=256))
    try:
        decoder.feed(garbage)
    except ProtocolError:
        pass
    assert decoder.buffered <= 4096 + 300
