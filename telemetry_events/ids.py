"""UUID v7 event IDs (RFC 9562): time-ordered, so the queue's oldest-first order follows creation."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

# The canonical spelling (lower-case, hyphenated): one regular expression match, no object built.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_is_canonical = _CANONICAL.fullmatch
_lock = threading.Lock()
_last_ms = 0
_sequence = 0


def new_event_id() -> str:
    """Returns a fresh UUID v7 as its canonical string.

    Within one millisecond the 12-bit `rand_a` field counts up from a random start, so IDs
    minted by this process sort in the order they were made.
    """
    global _last_ms, _sequence
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _sequence = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _sequence += 1
            if _sequence > 0xFFF:
                # Counter exhausted: borrow the next millisecond rather than repeat an order.
                _last_ms += 1
                _sequence = 0
        ms, seq = _last_ms, _sequence
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def is_uuid(value: str) -> bool:
    """Tells whether `value` is a UUID in any spelling `uuid.UUID` reads (canonical, compact, braces, urn)."""
    if isinstance(value, str) and _is_canonical(value):
        return True
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def canonical_uuid(value: str) -> str:
    """The lower-case, hyphenated form of a UUID, so that one ID has one spelling.

    Raises:
        ValueError: `value` is not a UUID.
    """
    if isinstance(value, str) and _is_canonical(value):
        return value  # already canonical: skip the parse on the hot path
    return str(uuid.UUID(value))
