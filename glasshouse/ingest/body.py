"""Reading an agent's request body within hard limits.

The compressed body is capped before it is read, and gzip is inflated incrementally with
`max_length`, so a small "gzip bomb" is stopped after the cap instead of filling memory.
"""

from __future__ import annotations

import zlib

from django.http import HttpRequest

MAX_COMPRESSED_BYTES = 2 * 1024 * 1024
MAX_DECOMPRESSED_BYTES = 2 * 1024 * 1024
_CHUNK = 64 * 1024


class BodyRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def read_body(request: HttpRequest) -> bytes:
    """The decoded body, or BodyRefused (413 too large, 415 unknown encoding, 400 broken gzip)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(declared)
    except ValueError:
        raise BodyRefused(400, "Content-Length is not a number.") from None
    if length > MAX_COMPRESSED_BYTES:
        raise BodyRefused(413, f"The body is larger than {MAX_COMPRESSED_BYTES} bytes; send smaller batches.")
    # read() on Django's LimitedStream stops at Content-Length, so this cannot over-read.
    raw = request.read(MAX_COMPRESSED_BYTES + 1)
    if len(raw) > MAX_COMPRESSED_BYTES:
        raise BodyRefused(413, f"The body is larger than {MAX_COMPRESSED_BYTES} bytes; send smaller batches.")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > MAX_DECOMPRESSED_BYTES:
            raise BodyRefused(413, f"The batch is larger than {MAX_DECOMPRESSED_BYTES} bytes uncompressed.")
        return raw
    if encoding != "gzip":
        raise BodyRefused(415, f"Content-Encoding {encoding!r} is not supported; use gzip or identity.")
    return gunzip_capped(raw, MAX_DECOMPRESSED_BYTES)


def gunzip_capped(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while pending:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise BodyRefused(413, f"The batch is larger than {limit} bytes uncompressed.")
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            raise BodyRefused(400, "The gzip body is truncated.")
    except zlib.error as exc:
        raise BodyRefused(400, f"The body is not valid gzip: {exc}.") from None
    return bytes(out)
