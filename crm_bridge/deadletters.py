"""The dead-letter view: deliveries that used up their attempts, and replaying them.

A dead letter is a ``webhook_deliveries`` row in state ``dead`` (also visible as the
``webhook_dead_letters`` view). Replaying one puts it back to ``pending`` with its attempts
reset: it is sent again with the same ``webhook-id`` as soon as its endpoint's worker looks,
before any later delivery of the same call not already in flight (it is the oldest pending one
of its lane).
Used by ``cxos deadletters`` and available to the API.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cxos.storage.database import Pool, Record

_COLUMNS = (
    "id, endpoint, event_id::text AS event_id, event_type, ordering_key, attempts, last_status, "
    "last_error, replays, created_at, dead_at"
)

_LIST = f"""
SELECT {_COLUMNS} FROM webhook_deliveries
WHERE state = 'dead' AND ($1::text IS NULL OR endpoint = $1) AND id > $2
ORDER BY id
LIMIT $3
"""

# Back to pending, and its lane (re)opened: a lane row exists while the lane has pending
# deliveries (migration 0004). The replayed delivery is older than anything pending in its lane,
# so it is the lane's head and due now, unless a later one is in flight: it goes right after that.
_REPLAY = """
WITH replayed AS (
    UPDATE webhook_deliveries
    SET state = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL,
        replays = replays + 1
    WHERE state = 'dead' AND {condition}
    RETURNING id, endpoint, ordering_key
), lanes AS (
    INSERT INTO webhook_lanes AS l (endpoint, ordering_key)
    SELECT DISTINCT endpoint, ordering_key FROM replayed
    ORDER BY endpoint, ordering_key
    ON CONFLICT (endpoint, ordering_key) DO UPDATE
    SET next_attempt_at = LEAST(l.next_attempt_at, now())
)
SELECT endpoint FROM replayed
"""

_REPLAY_ONE = _REPLAY.format(condition="id = $1")

_REPLAY_ALL = _REPLAY.format(condition="($1::text IS NULL OR endpoint = $1)")

_STATE = """
SELECT state FROM webhook_deliveries WHERE id = $1
UNION ALL
SELECT 'delivered' FROM webhook_delivered WHERE id = $1
"""


class DeadLetterNotFoundError(LookupError):
    """No delivery with this id, or it is not a dead letter (says which)."""

    def __init__(self, delivery_id: int, state: str | None) -> None:
        reason = (
            f"no webhook delivery {delivery_id}"
            if state is None
            else f"webhook delivery {delivery_id} is {state}, not a dead letter"
        )
        super().__init__(reason)
        self.delivery_id = delivery_id
        self.state = state


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    id: int
    """The delivery id: what ``replay`` takes."""
    endpoint: str
    event_id: str
    event_type: str
    ordering_key: str
    """The call id (or ``agent:…`` / ``node:…`` for events about no call)."""
    attempts: int
    last_status: int | None
    last_error: str | None
    replays: int
    """How many times it was replayed before."""
    created_at: datetime.datetime
    dead_at: datetime.datetime


def _dead_letter(record: Record) -> DeadLetter:
    status = record["last_status"]
    return DeadLetter(
        id=int(record["id"]),
        endpoint=str(record["endpoint"]),
        event_id=str(record["event_id"]),
        event_type=str(record["event_type"]),
        ordering_key=str(record["ordering_key"]),
        attempts=int(record["attempts"]),
        last_status=int(status) if status is not None else None,
        last_error=record["last_error"],
        replays=int(record["replays"]),
        created_at=record["created_at"],
        dead_at=record["dead_at"],
    )


async def list_dead_letters(
    pool: Pool, *, endpoint: str | None = None, after_id: int = 0, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters oldest first; page with ``after_id`` = the last id seen."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    async with pool.acquire() as connection:
        records = await connection.fetch(_LIST, endpoint, after_id, limit)
    return [_dead_letter(record) for record in records]


async def replay(pool: Pool, delivery_id: int) -> str:
    """Queue one dead letter for delivery again; returns its endpoint."""
    async with pool.acquire() as connection:
        endpoint = await connection.fetchval(_REPLAY_ONE, delivery_id)
        if endpoint is None:
            state = await connection.fetchval(_STATE, delivery_id)
            raise DeadLetterNotFoundError(delivery_id, state)
    return str(endpoint)


async def replay_all(pool: Pool, *, endpoint: str | None = None) -> int:
    """Queue every dead letter (of ``endpoint``, or of all) again; returns how many."""
    async with pool.acquire() as connection:
        replayed = await connection.fetch(_REPLAY_ALL, endpoint)
    return len(replayed)
