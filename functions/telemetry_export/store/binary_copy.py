"""Reading what `COPY (query) TO STDOUT (FORMAT binary)` sends: each value's own bytes, nothing to decode.

pg8000 asks for every result column in text form, so a `bytea` value crosses as `\\x` and two
hex digits a byte, is decoded into a string and then into bytes, one column at a time. A
binary COPY sends the bytes themselves, and pg8000 only hands its messages over.

The format (PostgreSQL's COPY reference, "Binary Format"): an 11-byte signature, a 32-bit flags
field, a 32-bit header extension length and that many bytes; then each row as a 16-bit field
count and, per field, a 32-bit length (-1 for NULL) and that many bytes, in the type's binary
form (text as UTF-8, integers big-endian); a field count of -1 ends the data. A query's rows are
read where the query is (their layout is its columns'); this module finds them.
"""

from __future__ import annotations

import struct

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
TRAILER = b"\xff\xff"  # a field count of -1
_HEADER = struct.Struct("!ii")  # flags, header extension length
_WITH_OIDS = 1 << 16


class BinaryCopyError(ValueError):
    """The data is not a complete binary COPY stream, or its rows are not the expected layout."""


def row_data(data: bytes) -> tuple[int, int]:
    """Where the rows of a binary COPY stream start, and where they end (the trailer's offset).

    Raises:
        BinaryCopyError: no signature, OIDs included (never asked for), or no trailer (cut off).
    """
    start = len(SIGNATURE) + _HEADER.size
    if len(data) < start + len(TRAILER) or not data.startswith(SIGNATURE):
        raise BinaryCopyError("not a binary COPY stream: the signature is missing")
    flags, extension = _HEADER.unpack_from(data, len(SIGNATURE))
    if flags & _WITH_OIDS:
        raise BinaryCopyError("a binary COPY stream with OIDs, which were not asked for")
    start += extension
    end = len(data) - len(TRAILER)
    if extension < 0 or start > end or not data.endswith(TRAILER):
        raise BinaryCopyError("the binary COPY stream is cut off: its trailer is missing")
    return start, end
