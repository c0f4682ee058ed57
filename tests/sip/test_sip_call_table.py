"""The UA core at call-centre rates: ended calls are forgotten, the calls in progress are found
without a scan, and a trunk's INVITEs meet the trunk's rate limit rather than the per-source one.

Driven in memory with the harness of test_sip_core.py and a fake clock.
"""

from __future__ import annotations

import itertools

from config.settings import Dialplan, EntryPoint, Trunk
from telephony.events import CallEnded
from telephony.sip.core import CoreSettings, IncomingCall, SipCore
from telephony.sip.guard import GuardSettings, SourceGuard
from telephony.sip.message import SipRequest, SipResponse, build_response
from telephony.sip.registrar import Registrar, RegistrarSettings
from telephony.sip.transaction import TransactionLayer
from telephony.trunks import TrunkTable
from tests.sip.test_sip_core import (
    ANSWER,
    OFFER,
    STRANGER,
    T1,
    TRUNK,
    Harness,
    ack_for,
    contact_of,
    make_core,
    request,
    responses,
    statuses,
)


def invite(n: int) -> bytes:
    """The INVITE of the n-th caller: its own Call-ID, From tag and branch."""
    return request(
        "INVITE", call_id=f"call-{n}", from_tag=f"caller{n}", branch=f"z9hG4bKinv{n}", body=OFFER
    )


def ack(n: int, ok: SipResponse) -> bytes:
    """The n-th caller's ACK for our 200."""
    return request(
        "ACK", call_id=f"call-{n}", from_tag=f"caller{n}", to_tag=ok.to.tag,
        branch=f"z9hG4bKack{n}", uri=contact_of(ok),
    )  # fmt: skip


def ended(sip: Harness) -> dict[str, CallEnded]:
    return {e.call_id: e for e in sip.of(CallEnded) if isinstance(e, CallEnded)}


def call_ids(sip: Harness) -> list[str]:
    return [e.call_id for e in sip.of(IncomingCall) if isinstance(e, IncomingCall)]


def test_an_ended_call_is_forgotten_and_late_requests_in_it_get_481() -> None:
    sip = Harness(make_core())
    call, ok = sip.call_up()
    assert sip.core.active_calls() == [call.call_id] and sip.core.has_active_calls()

    bye = request("BYE", cseq=2, to_tag=ok.to.tag, branch="z9hG4bKbye1")
    assert statuses(sip.receive(bye)) == [200]
    assert sip.core.leg(call.call_id) is None
    assert sip.core.active_calls() == [] and not sip.core.has_active_calls()
    # A retransmitted BYE is answered again by its transaction (RFC 3261 §17.2.2) ...
    assert statuses(sip.receive(bye)) == [200]
    # ... and a late ACK for the 200 is swallowed; a new request in the dialog gets 481.
    assert sip.receive(ack_for(ok, branch="z9hG4bKlate")) == []
    info = request("INFO", cseq=3, to_tag=ok.to.tag, branch="z9hG4bKinfo3")
    assert statuses(sip.receive(info)) == [481]
    assert len(ended(sip)) == 1


def test_every_way_of_ending_leaves_no_call_behind() -> None:
    sip = Harness(make_core())
    for n in range(8):
        sip.receive(invite(n))
    ids = call_ids(sip)
    assert len(ids) == 8
    # 0-1: caller's BYE after answer; 2-3: our hangup after answer; 4: cancelled while
    # offered; 5: rejected; 6: hung up before answer (480); 7: caller's BYE before the ACK.
    oks: dict[int, SipResponse] = {}
    for n in (0, 1, 2, 3, 7):
        sip.core.answer(ids[n], ANSWER, sip.now)
        (oks[n],) = responses(sip.flush())
        if n != 7:
            assert sip.receive(ack(n, oks[n])) == []
    for n in (0, 1, 7):
        bye = request(
            "BYE", call_id=f"call-{n}", from_tag=f"caller{n}", cseq=2, to_tag=oks[n].to.tag,
            branch=f"z9hG4bKbye{n}",
        )  # fmt: skip
        assert statuses(sip.receive(bye)) == [200]
    for n in (2, 3):
        sip.core.hangup(ids[n], sip.now)
        (our_bye,) = sip.flush()
        assert isinstance(our_bye, SipRequest)
        sip.receive(build_response(our_bye, 200).to_bytes())
    cancel = request("CANCEL", call_id="call-4", from_tag="caller4", branch="z9hG4bKinv4")
    assert sorted(statuses(sip.receive(cancel))) == [200, 487]
    sip.core.reject(ids[5], 486, sip.now)
    sip.core.hangup(ids[6], sip.now)
    sip.flush()

    causes = {call_id: e.cause for call_id, e in ended(sip).items()}
    assert [causes[ids[n]] for n in range(8)] == (
        ["normal"] * 4 + ["cancelled", "rejected", "rejected", "normal"]
    )
    assert sip.core.active_calls() == [] and not sip.core.has_active_calls()
    assert all(sip.core.leg(call_id) is None for call_id in ids)
    # Nothing is left for the timers to find either: 2xx retransmissions stop, no stray BYE.
    later = sip.advance(64 * T1 + 1.0)
    assert not [m for m in later if isinstance(m, SipRequest)]
    assert len(ended(sip)) == 8


def test_cancel_and_missing_ack_find_their_call_among_many() -> None:
    sip = Harness(make_core())
    for n in range(50):
        sip.receive(invite(n))
    ids = call_ids(sip)
    # Answer the even calls and never acknowledge call 10's 200; the others are acknowledged.
    for n in range(0, 50, 2):
        sip.core.answer(ids[n], ANSWER, sip.now)
        (ok,) = responses(sip.flush())
        if n != 10:
            assert sip.receive(ack(n, ok)) == []
    cancel = request("CANCEL", call_id="call-33", from_tag="caller33", branch="z9hG4bKinv33")
    assert sorted(statuses(sip.receive(cancel))) == [200, 487]
    assert {cid: e.cause for cid, e in ended(sip).items()} == {ids[33]: "cancelled"}

    # §13.3.1.4: 64*T1 without an ACK: that one call is ended with BYE, no other.
    after = sip.advance(64 * T1 + 0.01)
    byes = [m for m in after if isinstance(m, SipRequest) and m.method == "BYE"]
    assert [bye.call_id for bye in byes] == ["call-10"]
    sip.receive(build_response(byes[0], 200).to_bytes())
    assert set(ended(sip)) == {ids[33], ids[10]}
    assert len(sip.core.active_calls()) == 48


# --- rate limits: per trunk for trunks, per source for everyone else ----------------------


def limited_core(*, trunk_rate: float, source_rate: float, source_burst: int) -> SipCore:
    guard = SourceGuard(GuardSettings(rate=source_rate, burst=source_burst))
    ids = itertools.count(1)
    trunk = Trunk(id="carrier", sources=("192.0.2.0/24",), max_calls_per_second=trunk_rate)
    return SipCore(
        settings=CoreSettings(user_agent="CXOS-test"),
        transactions=TransactionLayer(),
        trunks=TrunkTable.build([trunk]),
        dialplan=Dialplan(numbers={"*": EntryPoint(ivr="main")}),
        registrar=Registrar(
            RegistrarSettings(realm="cxos"), credentials={}, secret=b"k" * 32, guard=guard
        ),
        guard=guard,
        new_id=lambda: f"id{next(ids)}",
    )


def test_a_trunk_is_held_to_its_own_rate_not_the_per_source_one() -> None:
    sip = Harness(limited_core(trunk_rate=20.0, source_rate=1.0, source_burst=5))
    # 30 INVITEs at once from a trunk address: one second's worth (20) gets in, far over the
    # per-source burst of 5; the rest are dropped unanswered.
    answered = [n for n in range(30) if sip.receive(invite(n))]
    assert answered == list(range(20))
    assert len(call_ids(sip)) == 20
    assert sip.core.counters.rate_limited == 10
    # Another address of the same trunk shares its bucket; half a second later, 10 more.
    other = ("192.0.2.77", 5060)
    assert sip.receive(invite(30), source=other) == []
    sip.now += 0.5
    assert sum(bool(sip.receive(invite(n), source=other)) for n in range(31, 45)) == 10


def test_a_flood_from_a_source_that_is_no_trunk_is_still_limited_per_source() -> None:
    sip = Harness(limited_core(trunk_rate=1000.0, source_rate=1.0, source_burst=5))
    # An INVITE scan (svwar/svcrack style) from a stranger: five answers (403), then silence.
    replies = [sip.receive(invite(n), source=STRANGER) for n in range(40)]
    assert [statuses(r) for r in replies[:5]] == [[100, 403]] * 5
    assert all(r == [] for r in replies[5:])
    # The trunk is untouched by it.
    assert statuses(sip.receive(invite(99), source=TRUNK)) == [100]


def test_a_trunk_address_registering_is_limited_per_source() -> None:
    sip = Harness(limited_core(trunk_rate=1000.0, source_rate=1.0, source_burst=3))
    replies = [
        sip.receive(request("REGISTER", uri="sip:192.0.2.1", branch=f"z9hG4bKreg{n}"))
        for n in range(6)
    ]
    assert [bool(r) for r in replies] == [True] * 3 + [False] * 3
