"""The claim returns exactly the stored bytes, oldest first, and leases exactly what it returns.

The claim reads its rows with a binary COPY (store/binary_copy.py), so these tests read the same
rows back the ordinary way, through pg8000's text form, and compare.
"""

from __future__ import annotations

import os
import struct
import uuid

import pytest

from telemetry_export.store import export_queue as store
from telemetry_export.store.binary_copy import SIGNATURE, TRAILER, BinaryCopyError
from telemetry_export.store.connection import transaction

# Payloads chosen to break a reader that decodes or frames them: nothing, every byte value,
# text that looks like an escape in each of Postgres' and Python's spellings, the COPY format's
# own signature and trailer, a length-prefix look-alike, and one payload larger than any event.
ODD_PAYLOADS = {
    "empty": b"",
    "one NUL": b"\x00",
    "every byte": bytes(range(256)),
    "hex escape": b"\\x41\\x",
    "octal escape": b"\\000\\377\\\\",
    "python escapes": b"\\n\\t\\'\\\"\\u00e9",
    "backslashes": b"\\" * 37,
    "copy signature": SIGNATURE + b"\x00\x00\x00\x00",
    "copy trailer": TRAILER,
    "length look-alike": struct.pack("!hi", 3, 36) + b"x" * 36,
    "not UTF-8": b"\xc3\x28\xff\xfe",
    "large": os.urandom(5 * 1024 * 1024),
}


def _insert(conn, payloads: dict[str, bytes], attempts: int = 0) -> dict[str, bytes]:
    """Rows one millisecond apart, oldest first in the order given; returns row ID -> payload.

    They are written newest first, so that the table's physical order is the reverse of the claim's.
    """
    rows = {str(uuid.uuid4()): payload for payload in payloads.values()}
    cursor = conn.cursor()
    for offset, (row_id, payload) in reversed(list(enumerate(rows.items()))):
        cursor.execute(
            "INSERT INTO telemetry_events_export_queue (id, timestamp, payload_pb, attempts)"
            " VALUES (%s, now() - interval '1 hour' + %s * interval '1 millisecond', %s, %s)",
            (row_id, offset, payload, attempts),
        )
    conn.commit()
    return rows


def _stored(conn) -> dict[str, tuple[bytes, int, str | None]]:
    """Every row's payload, attempts and lease owner, read through pg8000's text form."""
    cursor = conn.cursor()
    cursor.execute("SELECT id::text, payload_pb, attempts, lease_owner::text FROM telemetry_events_export_queue")
    found = {row_id: (bytes(payload), attempts, owner) for row_id, payload, attempts, owner in cursor.fetchall()}
    conn.commit()
    return found


def _claim(conn, limit: int = 1_000, owner: str | None = None, skip=(), lease: float = 300.0):
    with transaction(conn) as cursor:
        return store.claim(cursor, limit, lease, owner or str(uuid.uuid4()), skip=skip)


def test_the_claim_returns_exactly_the_stored_bytes_however_odd(conn):
    rows = _insert(conn, ODD_PAYLOADS, attempts=6)
    # Oldest first whatever the plan: with a hash join the update meets rows in the table's
    # physical order, the reverse of the claim's here (large claims get such plans by themselves).
    conn.cursor().execute("SET enable_nestloop = off")
    conn.cursor().execute("SET enable_mergejoin = off")
    owner = str(uuid.uuid4())
    claimed = _claim(conn, owner=owner)
    assert [row.id for row in claimed] == list(rows)  # oldest first
    assert {row.id: row.payload for row in claimed} == rows
    assert all(type(row.payload) is bytes for row in claimed)
    assert [row.attempts for row in claimed] == [7] * len(rows)  # the claim's attempt, counted and returned
    assert _stored(conn) == {row_id: (payload, 7, owner) for row_id, payload in rows.items()}


def test_the_claim_takes_the_oldest_up_to_its_limit_skips_what_it_is_told_and_leases_what_it_returns(conn):
    rows = list(_insert(conn, {str(n): bytes([n]) * n for n in range(40)}))
    owner = str(uuid.uuid4())
    skipped = rows[3:8]
    claimed = _claim(conn, limit=10, owner=owner, skip=skipped, lease=1_000)
    assert [row.id for row in claimed] == rows[:3] + rows[8:15]
    assert [row.payload for row in claimed] == [bytes([n]) * n for n in (0, 1, 2, *range(8, 15))]
    leased = {row_id for row_id, (_, _, lease_owner) in _stored(conn).items() if lease_owner == owner}
    assert leased == {row.id for row in claimed}
    cursor = conn.cursor()
    cursor.execute(
        "SELECT min(leased_until - now()), max(leased_until - now()) FROM telemetry_events_export_queue"
        " WHERE lease_owner = %s",
        (owner,),
    )
    shortest, longest = cursor.fetchone()
    conn.commit()
    assert 900 < shortest.total_seconds() <= longest.total_seconds() <= 1_000
    # Leased rows are not claimed again; the rest are, and then nothing.
    second = _claim(conn, limit=100, skip=skipped)
    assert [row.id for row in second] == rows[15:]
    stored = _stored(conn)
    assert _claim(conn, limit=100) == [store.ClaimedRow(i, stored[i][0], 1) for i in skipped]
    assert _claim(conn, limit=100) == []


def test_a_long_skip_list_is_honoured(conn):
    rows = list(_insert(conn, {str(n): b"x" for n in range(30)}))
    skip = [str(uuid.uuid4()) for _ in range(20_000)] + rows[:25]
    assert [row.id for row in _claim(conn, skip=skip)] == rows[25:]


def test_the_claims_parameters_do_not_outlive_its_transaction(conn):
    _insert(conn, {"one": b"x"})
    _claim(conn)
    cursor = conn.cursor()
    cursor.execute(
        "SELECT coalesce(current_setting('telemetry_export.claim_owner', true), ''),"
        " coalesce(current_setting('telemetry_export.claim_limit', true), '')"
    )
    assert cursor.fetchone() == ["", ""]
    conn.commit()


def _copy_stream(*rows: tuple[bytes, int, bytes]) -> bytes:
    """A binary COPY stream of (ID, attempts, payload) rows, written from the format's description."""
    parts = [SIGNATURE, struct.pack("!ii", 0, 0)]
    for row_id, attempts, payload in rows:
        parts.append(struct.pack("!hi", 3, len(row_id)) + row_id)
        parts.append(struct.pack("!ii", 4, attempts))
        parts.append(struct.pack("!i", len(payload)) + payload)
    parts.append(TRAILER)
    return b"".join(parts)


ID_A = b"0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0a"
ID_B = b"0194f3a2-7c1e-7b2a-9d3e-5f6a7b8c9d0b"


def test_a_stream_written_by_hand_reads_back_and_every_cut_is_an_error():
    data = _copy_stream((ID_A, 1, b"\xff\xff"), (ID_B, 2, b""))
    assert store.claimed_rows(data) == [
        store.ClaimedRow(ID_A.decode(), b"\xff\xff", 1),
        store.ClaimedRow(ID_B.decode(), b"", 2),
    ]
    assert store.claimed_rows(_copy_stream()) == []
    for cut in range(len(data)):
        with pytest.raises(BinaryCopyError):
            store.claimed_rows(data[:cut])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"PGCOPY\n\xff\r\n\x01" + _copy_stream()[11:], id="wrong signature"),
        pytest.param(SIGNATURE + struct.pack("!ii", 1 << 16, 0) + TRAILER, id="with OIDs"),
        pytest.param(
            _copy_stream((ID_A, 1, b"x")).replace(struct.pack("!hi", 3, 36), struct.pack("!hi", 2, 36)), id="two fields"
        ),
        pytest.param(_copy_stream((ID_A[:35], 1, b"x")), id="short ID"),
        pytest.param(_copy_stream((ID_A, 1, b"x")).replace(b"\x00\x00\x00\x01x", b"\xff\xff\xff\xffx"), id="NULL"),
        pytest.param(_copy_stream((ID_A, 1, b"x")) + b"\x00", id="data after the trailer"),
    ],
)
def test_anything_but_the_claims_layout_is_an_error(data):
    with pytest.raises(BinaryCopyError):
        store.claimed_rows(data)
