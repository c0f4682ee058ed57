"""Checks a UAS makes on a request before serving it, next to the dialog checks of `dialog`.

- Merged requests (RFC 3261 §8.2.2.2): a request without a To tag whose From tag, Call-ID and
  CSeq equal those of a request already being handled in another transaction reached us twice
  over different paths (a forking proxy); the second copy gets 482 (Loop Detected).
- Max-Forwards (§16.3 step 3): a request that arrives with Max-Forwards 0 and is not for us to
  answer directly gets 483 (Too Many Hops). OPTIONS is the exception: it is answered (§11).
"""

from __future__ import annotations

from collections import OrderedDict

from telephony.sip.dialog import Rejection
from telephony.sip.message import SipRequest
from telephony.sip.transaction_types import ServerTransactionId

# (From tag, Call-ID, CSeq number, CSeq method)
_MergeKey = tuple[str | None, str, int, str]


class MergedRequestDetector:
    """Remembers out-of-dialog requests for `window` seconds to spot merged copies (§8.2.2.2).

    Bounded: at most `max_entries` requests are remembered; the oldest are forgotten first, so
    under a flood some merged copies may be served rather than memory grown.
    """

    __slots__ = ("_entries", "_max_entries", "_window")

    def __init__(self, *, window: float = 32.0, max_entries: int = 50_000) -> None:
        if window <= 0 or max_entries < 1:
            raise ValueError("window must be positive and max_entries at least 1")
        self._window = window
        self._max_entries = max_entries
        # key -> (transaction that first carried it, time first seen); oldest first.
        self._entries: OrderedDict[_MergeKey, tuple[ServerTransactionId, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def check(
        self, request: SipRequest, transaction: ServerTransactionId, now: float
    ) -> Rejection | None:
        """482 when `request` is a merged copy of one seen in another transaction, else None
        (and the request is remembered). In-dialog requests (To tag present) are not checked."""
        if request.to.tag is not None or request.method == "ACK":
            return None
        self._expire(now)
        cseq = request.cseq
        key = (request.from_.tag, request.call_id, cseq.number, cseq.method)
        seen = self._entries.get(key)
        if seen is not None:
            if seen[0] != transaction:
                return Rejection(status=482)
            return None
        self._entries[key] = (transaction, now)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return None

    def _expire(self, now: float) -> None:
        entries = self._entries
        horizon = now - self._window
        while entries:
            _, (_, seen_at) = next(iter(entries.items()))
            if seen_at > horizon:
                break
            entries.popitem(last=False)
