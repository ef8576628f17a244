"""How a sent batch settles: the exporter's "nothing lost" rules, in one pure place.

Given a batch (its rows and attempts, what the gateway acknowledged, which messages it never
answered) and how its stream ended, `settle` says which rows are exported, quarantined,
released for a later run (and whether their attempt is given back), and which must be sent
again alone to find the one the gateway refuses. Nothing here touches the database or gRPC.

The rules:
- Acknowledged rows are exported, whatever else happened.
- Rows that can never be sent (set aside when claimed) are quarantined with their reason.
- A complete answer that acknowledged none of a batch's events is trouble behind the gateway,
  not bad rows: attempts are given back and the run stops.
- Rows refused among acknowledged ones spend their attempt; past the attempt limit they are
  quarantined.
- The gateway unreachable, stuck, busy, or refusing this instance, or the run out of time:
  the rows had no fair attempt, so it is given back. Busy and refused rows are not failed
  events (nothing is wrong with them, or the instance, not the rows, must be fixed).
- The gateway refusing a message (it cannot decode it, say): the rows of the first unanswered
  message are suspects, split in halves and sent again alone; the rows behind it were only
  caught in the same stream and are sent again as one group. A row refused while alone on a
  stream that accepted the instance is `isolated`: quarantined with the gateway's reason once
  the gateway has been seen to accept other events. No attempt is given back for these.
- gRPC's size limit: a lone event over the limit the gateway named can never be sent and is
  quarantined; an event under it is not. Without a named limit, as a refused message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from telemetry_export.gateway_errors import (
    GatewayBusy,
    GatewayUnavailable,
    InstanceRefused,
    MessageRefused,
    MessageTooLarge,
    StreamError,
)

NOT_ACKNOWLEDGED = "not acknowledged by the gateway"
OUT_OF_TIME = "unanswered when the time budget ran out"
# Bytes a RecordEventsRequest holding one event adds to it: two tags and two length prefixes.
LONE_EVENT_OVERHEAD = 12

# How a run ends, as `stopped_because` says it.
BACKLOG_EMPTY = "backlog empty"
TIME_BUDGET = "time budget"
BATCH_LIMIT = "batch limit reached"
EXPORT_DISABLED = "export disabled: TELEMETRY_EXPORT_MODE=disabled, nothing sent"
GATEWAY_UNAVAILABLE = "gateway unavailable"
INSTANCE_REFUSED = "the gateway refused this instance"
GATEWAY_BUSY = "gateway busy"
MESSAGE_REFUSED = "gateway refused a message"
# Runs that stopped on the gateway: a later stream break does not change what they say.
GATEWAY_FAILURES = (GATEWAY_UNAVAILABLE, INSTANCE_REFUSED, GATEWAY_BUSY)


class StreamEnded(GatewayUnavailable):
    """The gateway closed the stream without an error while messages were unanswered."""


class OutOfTime(StreamError):
    """The run's time budget ended while the batch was unanswered."""

    def __init__(self) -> None:
        super().__init__(OUT_OF_TIME)


@dataclass(frozen=True)
class SentRows:
    """One batch as the gateway saw it."""

    rows: Mapping[str, int]  # row ID -> attempts including this one, in claim order
    acknowledged: frozenset[str] = frozenset()
    unanswered: tuple[tuple[str, ...], ...] = ()  # event IDs of each message not answered, oldest first
    set_aside: Mapping[str, str] = field(default_factory=dict)  # unsendable when claimed -> reason
    lone_sizes: Mapping[str, int] = field(default_factory=dict)  # events too big to share a message -> bytes
    sent_alone: bool = False  # the only batch its stream carried
    first_unanswered: bool = True  # its first unanswered message is the stream's first


@dataclass(frozen=True)
class Settlement:
    exported: frozenset[str] = frozenset()
    quarantine: Mapping[str, str] = field(default_factory=dict)
    release: tuple[str, ...] = ()
    reason: str = ""  # recorded as the released rows' last error
    refund: bool = False  # give the released rows their attempt back
    failed: int = 0  # released rows that count as failed events
    suspects: tuple[tuple[str, ...], ...] = ()  # groups to send again, each alone on a stream
    isolated: Mapping[str, str] = field(default_factory=dict)  # refused alone -> reason
    accepted_none: bool = False  # a complete answer acknowledged nothing: stop the run
    again_this_run: bool = False  # released rows may be claimed again by the same run (after a busy gateway)


def settle(batch: SentRows, ending: StreamError | None, max_attempts: int) -> Settlement:
    """The outcome of `batch`; `ending` is None when the batch was answered in full."""
    exported = frozenset(i for i in batch.rows if i in batch.acknowledged)
    quarantine = dict(batch.set_aside)
    pending = [i for i in batch.rows if i not in exported and i not in quarantine]
    if ending is None:
        return _answered(batch, exported, quarantine, pending, max_attempts)
    if isinstance(ending, MessageTooLarge) and ending.limit is not None:
        unanswered = {i for message in batch.unanswered for i in message}
        for row_id, size in batch.lone_sizes.items():
            if row_id in unanswered and size + LONE_EVENT_OVERHEAD > ending.limit:
                quarantine[row_id] = (
                    f"event of {size} bytes is larger than the gateway accepts "
                    f"({ending.reason[:200]}): it can never be sent"
                )
        pending = [i for i in pending if i not in quarantine]
        # The rest may go again in this run once the cause is set aside (the exporter stops the run
        # when no stream's refusal set anything aside: the limit is then below its messages).
        return Settlement(
            exported, quarantine, tuple(pending), ending.reason, refund=True, failed=len(pending), again_this_run=True
        )
    if isinstance(ending, MessageRefused | MessageTooLarge):
        return _refused(batch, ending, exported, quarantine, pending, max_attempts)
    if isinstance(ending, InstanceRefused):
        reason = f"{INSTANCE_REFUSED}: {ending.reason}"
        return Settlement(exported, quarantine, tuple(pending), reason, refund=True, failed=0)
    if isinstance(ending, GatewayBusy):
        return Settlement(
            exported, quarantine, tuple(pending), ending.reason, refund=True, failed=0, again_this_run=True
        )
    # Unavailable, stuck, ended, out of time: no fair attempt.
    return Settlement(exported, quarantine, tuple(pending), ending.reason, refund=True, failed=len(pending))


def _answered(
    batch: SentRows, exported: frozenset[str], quarantine: dict[str, str], pending: list[str], max_attempts: int
) -> Settlement:
    sent = len(batch.rows) - len(batch.set_aside)
    if sent and not exported:
        reason = f"gateway acknowledged none of {sent} events"
        return Settlement(
            exported, quarantine, tuple(pending), reason, refund=True, failed=len(pending), accepted_none=True
        )
    return _spent(exported, quarantine, pending, NOT_ACKNOWLEDGED, batch.rows, max_attempts)


def _spent(
    exported: frozenset[str],
    quarantine: dict[str, str],
    pending: list[str],
    reason: str,
    attempts: Mapping[str, int],
    max_attempts: int,
    **rest,
) -> Settlement:
    """Rows that had a fair attempt and were refused: released, or quarantined past the limit."""
    exhausted = {i: f"{reason} after {attempts[i]} attempts" for i in pending if attempts[i] >= max_attempts}
    release = tuple(i for i in pending if i not in exhausted)
    return Settlement(exported, {**quarantine, **exhausted}, release, reason, refund=False, failed=len(release), **rest)


def _refused(
    batch: SentRows,
    ending: StreamError,
    exported: frozenset[str],
    quarantine: dict[str, str],
    pending: list[str],
    max_attempts: int,
) -> Settlement:
    pending_set = set(pending)
    messages = [tuple(i for i in message if i in pending_set) for message in batch.unanswered]
    messages = [message for message in messages if message]
    in_doubt = {i for message in messages for i in message}
    # Rows of answered messages that were not acknowledged had their fair attempt.
    refused_among_accepted = [i for i in pending if i not in in_doubt]
    suspects: list[tuple[str, ...]] = []
    isolated: dict[str, str] = {}
    if messages:
        if batch.first_unanswered:
            prime, rest = messages[0], tuple(i for message in messages[1:] for i in message)
            if len(prime) == 1 and batch.sent_alone:
                isolated[prime[0]] = f"refused by the gateway when sent alone: {ending.reason}"
            elif len(prime) == 1:
                suspects.append(prime)
            else:
                half = len(prime) // 2
                suspects.extend((prime[:half], prime[half:]))
        else:
            rest = tuple(i for message in messages for i in message)
        if rest:
            suspects.append(rest)
    return _spent(
        exported,
        quarantine,
        refused_among_accepted,
        NOT_ACKNOWLEDGED,
        batch.rows,
        max_attempts,
        suspects=tuple(suspects),
        isolated=isolated,
    )


def abandoned(
    suspects: list[tuple[str, ...]],
    isolated: Mapping[str, str],
    attempts: Mapping[str, int],
    reason: str,
    max_attempts: int,
) -> list[Settlement]:
    """What becomes of suspects still unresolved when a run ends.

    Suspect groups had a real refusal: released without their attempt back (past the limit,
    quarantined). Rows refused alone while the gateway accepted no other event cannot be
    blamed: released with the attempt given back.
    """
    settlements = []
    rows = [i for group in suspects for i in group]
    if rows:
        why = f"refused with other events in one message, not yet narrowed down: {reason}"
        settlements.append(_spent(frozenset(), {}, rows, why, attempts, max_attempts))
    if isolated:
        why = f"refused alone, but the gateway accepted no other event in this run: {next(iter(isolated.values()))}"
        settlements.append(Settlement(release=tuple(isolated), reason=why, refund=True, failed=len(isolated)))
    return settlements


def stop_reason(error: StreamError) -> str:
    """`stopped_because` for a run that ends on a stream error."""
    if isinstance(error, InstanceRefused):
        return f"{INSTANCE_REFUSED}: {error.reason}"
    if isinstance(error, GatewayBusy):
        return f"{GATEWAY_BUSY}: retry after {error.retry_after:g} s ({error.reason})"
    if isinstance(error, MessageRefused | MessageTooLarge):
        # Not an outage: what it refused is quarantined, or narrowed down on the next run.
        return f"{MESSAGE_REFUSED}: {error.reason}"
    return f"{GATEWAY_UNAVAILABLE}: {error.reason}"
