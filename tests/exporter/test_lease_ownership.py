"""Who may settle a row: `release` and `quarantine` act only on rows the run still holds;
`mark_exported` marks a row whoever holds it now (the gateway has it either way).

Run A claims rows; its lease then expires (set in the past here, as if A had stalled). Either no
one has claimed the rows since, so A is still their holder of record, or run B has claimed them:
then A's late release or quarantine must not touch B's lease, attempts or rows, while A's late
acknowledgement still marks them exported. Real Postgres, the store's real statements.
"""

from __future__ import annotations

import uuid

import pytest

from telemetry_export.store import export_queue as store
from telemetry_export.store.connection import transaction

from .conftest import record_samples

A, B = str(uuid.uuid4()), str(uuid.uuid4())


def _claim(conn, owner: str, limit: int = 10) -> list[str]:
    with transaction(conn) as cursor:
        return [row.id for row in store.claim(cursor, limit, 300, owner)]


def _expire(conn, owner: str) -> None:
    """`owner`'s leases run out, as when its run stalled past them."""
    with transaction(conn) as cursor:
        cursor.execute(
            "UPDATE telemetry_events_export_queue SET leased_until = now() - interval '1 second'"
            " WHERE lease_owner = %s",
            (owner,),
        )


def _state(conn, ids: list[str]) -> list[tuple]:
    """(lease owner, leased, attempts, last error, quarantined, quarantine reason, exported) per row, in `ids` order."""
    cursor = conn.cursor()
    cursor.execute(
        "SELECT id::text, lease_owner::text, leased_until IS NOT NULL, attempts, last_error,"
        " quarantined_at IS NOT NULL, quarantine_reason, exported_at IS NOT NULL"
        " FROM telemetry_events_export_queue WHERE id = ANY(%s::uuid[])",
        ("{" + ",".join(ids) + "}",),
    )
    found = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
    conn.commit()
    return [found[i] for i in ids]


@pytest.fixture
def claimed_by_a(conn) -> list[str]:
    record_samples(conn, 10, seed=81)
    ids = _claim(conn, A)
    assert len(ids) == 10
    _expire(conn, A)
    return ids


@pytest.fixture
def taken_by_b(conn, claimed_by_a) -> list[str]:
    assert _claim(conn, B) == claimed_by_a  # expired leases are claimable again
    return claimed_by_a


def _release(conn, ids, owner, refund=True) -> int:
    with transaction(conn) as cursor:
        return store.release(cursor, ids, owner, "released by a late run", refund_attempt=refund)


def _quarantine(conn, ids, owner) -> int:
    with transaction(conn) as cursor:
        return store.quarantine(cursor, {i: "quarantined by a late run" for i in ids}, owner)


def _mark(conn, ids) -> int:
    with transaction(conn) as cursor:
        return store.mark_exported(cursor, ids)


def test_release_after_the_lease_expired_acts_while_no_other_run_took_the_rows(conn, claimed_by_a):
    assert _release(conn, claimed_by_a, A) == 10
    assert _state(conn, claimed_by_a) == [(None, False, 0, "released by a late run", False, None, False)] * 10


def test_release_leaves_rows_another_run_took_untouched(conn, taken_by_b):
    assert _release(conn, taken_by_b, A) == 0
    assert _state(conn, taken_by_b) == [(B, True, 2, None, False, None, False)] * 10
    assert _release(conn, taken_by_b, B, refund=False) == 10  # their holder still can
    assert _state(conn, taken_by_b) == [(None, False, 2, "released by a late run", False, None, False)] * 10


def test_quarantine_after_the_lease_expired_acts_while_no_other_run_took_the_rows(conn, claimed_by_a):
    assert _quarantine(conn, claimed_by_a, A) == 10
    assert _state(conn, claimed_by_a) == [(None, False, 1, None, True, "quarantined by a late run", False)] * 10


def test_quarantine_leaves_rows_another_run_took_untouched(conn, taken_by_b):
    assert _quarantine(conn, taken_by_b, A) == 0
    assert _state(conn, taken_by_b) == [(B, True, 2, None, False, None, False)] * 10


def test_mark_exported_marks_rows_whoever_holds_them_now(conn, taken_by_b):
    late, rest = taken_by_b[:4], taken_by_b[4:]
    assert _mark(conn, late) == 4  # A's answer came late: the gateway has these rows all the same
    assert _state(conn, late) == [(None, False, 2, None, False, None, True)] * 4
    assert _state(conn, rest) == [(B, True, 2, None, False, None, False)] * 6
    # B, still holding the rest, settles its batch: what A marked stays exported, B's own rows go on.
    assert _release(conn, taken_by_b, B) == 6
    assert _quarantine(conn, taken_by_b, B) == 0
    assert _state(conn, late) == [(None, False, 2, None, False, None, True)] * 4
    assert _mark(conn, taken_by_b) == 6
    assert _mark(conn, taken_by_b) == 0  # marked once: exported_at is not moved again


def test_mark_exported_after_the_lease_expired_marks_the_rows(conn, claimed_by_a):
    assert _mark(conn, claimed_by_a) == 10
    assert _state(conn, claimed_by_a) == [(None, False, 1, None, False, None, True)] * 10
    # Settled rows are no one's to release or quarantine any more.
    assert _release(conn, claimed_by_a, A) == 0
    assert _quarantine(conn, claimed_by_a, A) == 0
    assert _state(conn, claimed_by_a) == [(None, False, 1, None, False, None, True)] * 10
