"""Page tokens at their edges: the offsets a token can hold, every byte of it bound, each refusal's reason.

The RPC tests walk real pages; these pin what the token itself promises, so that a token which dropped the
category from its MAC, accepted a shortened MAC, or lost its version check fails here rather than letting one
listing's token resume another.
"""

from __future__ import annotations

import base64
import struct

import pytest

from service import pagination
from service.pagination import InvalidPageTokenError, decode_page_token, encode_page_token

KEY = b"catalog-fingerprint-1"
OTHER_KEY = b"catalog-fingerprint-2"
LARGEST_OFFSET = 2**32 - 1  # the header keeps the offset in four bytes
NOT_ISSUED = "not a page token issued by this server"
NOT_FOR_THIS = "not a page token issued by this server for this category (or the catalog has changed)"


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def token_of(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@pytest.mark.parametrize("offset", [0, 1, 999, 1000, 1001, LARGEST_OFFSET - 1, LARGEST_OFFSET])
@pytest.mark.parametrize("category", ["", "books", "Books", "caf\u00e9"])
def test_a_token_resumes_at_its_offset_for_its_category(offset: int, category: str) -> None:
    token = encode_page_token(offset, category, KEY)
    assert decode_page_token(token, category, KEY) == offset
    assert "=" not in token  # padding is stripped: tokens travel in URLs and flags unquoted


def test_an_offset_beyond_four_bytes_cannot_be_encoded() -> None:
    with pytest.raises(struct.error):
        encode_page_token(LARGEST_OFFSET + 1, "", KEY)


@pytest.mark.parametrize(("category", "other"), [("books", "Books"), ("books", ""), ("", "books")])
def test_a_token_is_refused_for_another_category(category: str, other: str) -> None:
    token = encode_page_token(5, category, KEY)
    with pytest.raises(InvalidPageTokenError) as refused:
        decode_page_token(token, other, KEY)
    assert str(refused.value) == NOT_FOR_THIS


def test_a_token_is_refused_by_another_catalog() -> None:
    with pytest.raises(InvalidPageTokenError, match=r"\(or the catalog has changed\)"):
        decode_page_token(encode_page_token(5, "books", KEY), "books", OTHER_KEY)


def test_every_byte_of_a_token_is_bound() -> None:
    data = raw(encode_page_token(5, "books", KEY))
    assert len(data) == pagination._HEADER.size + pagination._MAC_BYTES
    for index in range(len(data)):
        changed = bytearray(data)
        changed[index] ^= 0x01
        with pytest.raises(InvalidPageTokenError):
            decode_page_token(token_of(bytes(changed)), "books", KEY)


@pytest.mark.parametrize("cut", [1, pagination._MAC_BYTES - 1, pagination._MAC_BYTES])
def test_a_shortened_token_is_refused(cut: int) -> None:
    data = raw(encode_page_token(5, "books", KEY))
    with pytest.raises(InvalidPageTokenError, match=NOT_FOR_THIS.replace("(", r"\(").replace(")", r"\)")):
        decode_page_token(token_of(data[:-cut]), "books", KEY)


def test_a_token_shorter_than_its_header_is_refused() -> None:
    with pytest.raises(InvalidPageTokenError):
        decode_page_token(token_of(b"\x01\x00"), "books", KEY)


@pytest.mark.parametrize("token", ["!!!!", "abc", "a", "%%%%%%%%"])
def test_text_that_is_not_base64_is_refused_as_not_issued(token: str) -> None:
    with pytest.raises(InvalidPageTokenError) as refused:
        decode_page_token(token, "books", KEY)
    assert str(refused.value) in (NOT_ISSUED, NOT_FOR_THIS)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_a_token_of_another_version_is_refused_even_with_a_valid_mac(version: int) -> None:
    header = pagination._HEADER.pack(version, 5)
    token = token_of(header + pagination._mac(header, "books", KEY))
    with pytest.raises(InvalidPageTokenError) as refused:
        decode_page_token(token, "books", KEY)
    assert str(refused.value) == "unsupported page token version"


def test_the_token_carries_version_one_and_the_offset_in_the_clear() -> None:
    # Opaque to clients but not secret: the MAC, not the encoding, is what stops a forged offset.
    data = raw(encode_page_token(258, "books", KEY))
    assert data[: pagination._HEADER.size] == b"\x01\x00\x00\x01\x02"
