"""Opaque ListProducts page tokens (AIP-158): where the next page starts, bound to the filter and catalog.

A token carries an offset into the filtered list, authenticated with an HMAC keyed by the catalog's
fingerprint and covering the category. So the server resumes in O(1), rejects tokens it did not issue or
issued for another filter, and every instance serving the same catalog file accepts every other's tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

_VERSION = 1
_HEADER = struct.Struct(">BI")  # version, offset
_MAC_BYTES = 12


class InvalidPageTokenError(ValueError):
    """The token was not issued by this catalog for this request."""


def encode_page_token(offset: int, category: str, key: bytes) -> str:
    """A token that resumes the listing of `category` at `offset`."""
    header = _HEADER.pack(_VERSION, offset)
    return base64.urlsafe_b64encode(header + _mac(header, category, key)).decode("ascii").rstrip("=")


def decode_page_token(token: str, category: str, key: bytes) -> int:
    """The offset a token resumes at; InvalidPageTokenError if it was not issued for this category."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidPageTokenError("not a page token issued by this server") from None
    header, mac = raw[: _HEADER.size], raw[_HEADER.size :]
    if len(header) != _HEADER.size or not hmac.compare_digest(mac, _mac(header, category, key)):
        raise InvalidPageTokenError(
            "not a page token issued by this server for this category (or the catalog has changed)"
        )
    version, offset = _HEADER.unpack(header)
    if version != _VERSION:
        raise InvalidPageTokenError("unsupported page token version")
    return int(offset)


def _mac(header: bytes, category: str, key: bytes) -> bytes:
    return hmac.new(key, header + category.encode("utf-8"), hashlib.sha256).digest()[:_MAC_BYTES]
