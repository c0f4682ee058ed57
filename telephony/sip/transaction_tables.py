"""The four RFC 3261 §17 transaction state machines, each written out as one transition table.

Rules the tables keep:

- Every (state, input) pair that can happen is listed, including the ones whose whole effect
  is to absorb a retransmission. A pair that is not listed raises `InvalidTransitionError`: it
  is a bug in the layer or a misuse by the TU, never something to ignore quietly.
- Timers belong to states: on entering a state every armed timer not in that state's `live`
  set is cancelled, so a timer of a state already left never fires into the table.
- RFC 6026 replaces the 2xx path of both INVITE machines: the INVITE client transaction enters
  Accepted on a 2xx and passes every 2xx (retransmissions and forks) to the TU until timer M; the
  INVITE server transaction enters Accepted on sending a 2xx, absorbs INVITE retransmissions and
  passes ACKs to the TU until timer L.
- In Accepted the INVITE server transaction also carries the UAS core's 2xx retransmission
  (§13.3.1.4): it lasts 64*T1, as timer L does, and stops when the ACK arrives.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from telephony.sip.transaction_types import InvalidTransitionError


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Timer(enum.Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - RFC 3261 names it so
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    RETRANSMIT_2XX = "2xx"  # UAS core 2xx retransmission, §13.3.1.4
    CANCEL_GUARD = "cancel"  # §9.1: no final answer 64*T1 after CANCEL -> give up


class Input(enum.Enum):
    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_FINAL_NON2XX = "300-699 received"
    RECV_REQUEST = "request retransmission received"
    RECV_ACK = "ACK received"
    TU_1XX = "TU sends 1xx"
    TU_2XX = "TU sends 2xx"
    TU_FINAL_NON2XX = "TU sends 300-699"
    TU_CANCEL = "TU cancels"
    TRANSPORT_ERROR = "transport error"


class Action(enum.Enum):
    ABSORB = "absorb"  # a retransmission or late message: count it, do nothing else
    PASS_RESPONSE = "pass response to TU"
    SEND_ACK = "send ACK for non-2xx"  # built once (§17.1.1.3), re-sent on each retransmission
    RETRANSMIT_REQUEST = "retransmit request"
    # §9.1: the CANCEL is sent once, and starts a 64*T1 guard for the INVITE's final answer.
    SEND_CANCEL_IF_PENDING = "send CANCEL if the TU asked for one"
    SEND_CANCEL = "send CANCEL"
    MARK_CANCEL_PENDING = "remember CANCEL until a provisional response"  # §9.1
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "re-send last response"
    PASS_ACK = "pass ACK to TU"
    STOP_2XX_RETRANSMIT = "stop 2xx retransmission"
    INFORM_TIMEOUT = "inform TU of timeout"
    INFORM_TRANSPORT_ERROR = "inform TU of transport error"
    INFORM_ACK_TIMEOUT = "inform TU that no ACK came"
    INFORM_ACK_TIMEOUT_IF_UNACKED = "inform TU if the 2xx was never acknowledged"
    START_A = "start A"
    START_B = "start B"
    START_D = "start D"
    START_E = "start E"
    START_F = "start F"
    START_G = "start G"
    START_H = "start H"
    START_I = "start I"
    START_J = "start J"
    START_K = "start K"
    START_L = "start L"
    START_M = "start M"
    START_2XX_RETRANSMIT = "start 2xx retransmission"
    BACKOFF_A = "double A"
    BACKOFF_E = "double E up to T2"
    BACKOFF_G = "double G up to T2"
    BACKOFF_2XX = "double 2xx interval up to T2"


@dataclass(frozen=True, slots=True)
class Transition:
    target: State
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class Machine:
    """One state machine: its entry actions, table and the timers each state keeps alive."""

    name: str
    initial: State
    entry: tuple[Action, ...]
    table: Mapping[tuple[State, Input | Timer], Transition]
    live: Mapping[State, frozenset[Timer]]

    def step(self, state: State, event: Input | Timer) -> Transition:
        transition = self.table.get((state, event))
        if transition is None:
            label = event.value if isinstance(event, Input) else f"timer {event.value}"
            raise InvalidTransitionError(self.name, state.value, label)
        return transition


_S = State
_I = Input
_A = Action
_T = Transition

# RFC 3261 §17.1.1.2, Figure 5, as amended by RFC 6026 §7.2 (Accepted, timer M).
INVITE_CLIENT = Machine(
    name="INVITE client transaction",
    initial=_S.CALLING,
    entry=(_A.START_A, _A.START_B),
    table=MappingProxyType(
        {
            (_S.CALLING, Timer.A): _T(_S.CALLING, (_A.RETRANSMIT_REQUEST, _A.BACKOFF_A)),
            (_S.CALLING, Timer.B): _T(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
            (_S.CALLING, _I.RECV_1XX): _T(
                _S.PROCEEDING, (_A.PASS_RESPONSE, _A.SEND_CANCEL_IF_PENDING)
            ),
            (_S.CALLING, _I.RECV_2XX): _T(_S.ACCEPTED, (_A.PASS_RESPONSE, _A.START_M)),
            (_S.CALLING, _I.RECV_FINAL_NON2XX): _T(
                _S.COMPLETED, (_A.SEND_ACK, _A.PASS_RESPONSE, _A.START_D)
            ),
            (_S.CALLING, _I.TU_CANCEL): _T(_S.CALLING, (_A.MARK_CANCEL_PENDING,)),
            (_S.CALLING, _I.TRANSPORT_ERROR): _T(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
            (_S.PROCEEDING, _I.RECV_1XX): _T(_S.PROCEEDING, (_A.PASS_RESPONSE,)),
            (_S.PROCEEDING, _I.RECV_2XX): _T(_S.ACCEPTED, (_A.PASS_RESPONSE, _A.START_M)),
            (_S.PROCEEDING, _I.RECV_FINAL_NON2XX): _T(
                _S.COMPLETED, (_A.SEND_ACK, _A.PASS_RESPONSE, _A.START_D)
            ),
            (_S.PROCEEDING, _I.TU_CANCEL): _T(_S.PROCEEDING, (_A.SEND_CANCEL,)),
            (_S.PROCEEDING, Timer.CANCEL_GUARD): _T(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
            # Nothing is sent in Proceeding; a late error report for an earlier send changes
            # nothing.
            (_S.PROCEEDING, _I.TRANSPORT_ERROR): _T(_S.PROCEEDING, (_A.ABSORB,)),
            # RFC 6026 §7.2: every 2xx goes to the TU (forks and retransmissions alike).
            (_S.ACCEPTED, _I.RECV_2XX): _T(_S.ACCEPTED, (_A.PASS_RESPONSE,)),
            (_S.ACCEPTED, _I.RECV_1XX): _T(_S.ACCEPTED, (_A.ABSORB,)),
            (_S.ACCEPTED, _I.RECV_FINAL_NON2XX): _T(_S.ACCEPTED, (_A.ABSORB,)),
            (_S.ACCEPTED, _I.TU_CANCEL): _T(_S.ACCEPTED, (_A.ABSORB,)),
            (_S.ACCEPTED, _I.TRANSPORT_ERROR): _T(_S.ACCEPTED, (_A.ABSORB,)),
            (_S.ACCEPTED, Timer.M): _T(_S.TERMINATED),
            # §17.1.1.2: a retransmitted final response gets the ACK again, not the TU.
            (_S.COMPLETED, _I.RECV_FINAL_NON2XX): _T(_S.COMPLETED, (_A.SEND_ACK,)),
            (_S.COMPLETED, _I.RECV_1XX): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.RECV_2XX): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.TU_CANCEL): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.TRANSPORT_ERROR): _T(_S.TERMINATED),
            (_S.COMPLETED, Timer.D): _T(_S.TERMINATED),
        }
    ),
    live=MappingProxyType(
        {
            _S.CALLING: frozenset({Timer.A, Timer.B}),
            # Timer B stops in Proceeding: a call may ring for as long as the callee lets it.
            _S.PROCEEDING: frozenset({Timer.CANCEL_GUARD}),
            _S.ACCEPTED: frozenset({Timer.M}),
            _S.COMPLETED: frozenset({Timer.D}),
            _S.TERMINATED: frozenset(),
        }
    ),
)

# RFC 3261 §17.1.2.2, Figure 6.
NON_INVITE_CLIENT = Machine(
    name="non-INVITE client transaction",
    initial=_S.TRYING,
    entry=(_A.START_E, _A.START_F),
    table=MappingProxyType(
        {
            (_S.TRYING, Timer.E): _T(_S.TRYING, (_A.RETRANSMIT_REQUEST, _A.BACKOFF_E)),
            (_S.TRYING, Timer.F): _T(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
            (_S.TRYING, _I.RECV_1XX): _T(_S.PROCEEDING, (_A.PASS_RESPONSE,)),
            (_S.TRYING, _I.RECV_2XX): _T(_S.COMPLETED, (_A.PASS_RESPONSE, _A.START_K)),
            (_S.TRYING, _I.RECV_FINAL_NON2XX): _T(_S.COMPLETED, (_A.PASS_RESPONSE, _A.START_K)),
            (_S.TRYING, _I.TRANSPORT_ERROR): _T(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
            (_S.PROCEEDING, Timer.E): _T(_S.PROCEEDING, (_A.RETRANSMIT_REQUEST, _A.BACKOFF_E)),
            (_S.PROCEEDING, Timer.F): _T(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
            (_S.PROCEEDING, _I.RECV_1XX): _T(_S.PROCEEDING, (_A.PASS_RESPONSE,)),
            (_S.PROCEEDING, _I.RECV_2XX): _T(_S.COMPLETED, (_A.PASS_RESPONSE, _A.START_K)),
            (_S.PROCEEDING, _I.RECV_FINAL_NON2XX): _T(_S.COMPLETED, (_A.PASS_RESPONSE, _A.START_K)),
            (_S.PROCEEDING, _I.TRANSPORT_ERROR): _T(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
            (_S.COMPLETED, _I.RECV_1XX): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.RECV_2XX): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.RECV_FINAL_NON2XX): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.TRANSPORT_ERROR): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, Timer.K): _T(_S.TERMINATED),
        }
    ),
    live=MappingProxyType(
        {
            _S.TRYING: frozenset({Timer.E, Timer.F}),
            _S.PROCEEDING: frozenset({Timer.E, Timer.F}),
            _S.COMPLETED: frozenset({Timer.K}),
            _S.TERMINATED: frozenset(),
        }
    ),
)

# RFC 3261 §17.2.1, Figure 7, as amended by RFC 6026 §7.1 (Accepted, timer L). The 100 Trying
# of §17.2.1 is sent by the layer as a TU_1XX right after creation.
INVITE_SERVER = Machine(
    name="INVITE server transaction",
    initial=_S.PROCEEDING,
    entry=(),
    table=MappingProxyType(
        {
            (_S.PROCEEDING, _I.RECV_REQUEST): _T(_S.PROCEEDING, (_A.RESEND_RESPONSE,)),
            (_S.PROCEEDING, _I.RECV_ACK): _T(_S.PROCEEDING, (_A.ABSORB,)),
            (_S.PROCEEDING, _I.TU_1XX): _T(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
            (_S.PROCEEDING, _I.TU_2XX): _T(
                _S.ACCEPTED, (_A.SEND_RESPONSE, _A.START_L, _A.START_2XX_RETRANSMIT)
            ),
            (_S.PROCEEDING, _I.TU_FINAL_NON2XX): _T(
                _S.COMPLETED, (_A.SEND_RESPONSE, _A.START_G, _A.START_H)
            ),
            (_S.PROCEEDING, _I.TRANSPORT_ERROR): _T(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
            # RFC 6026 §7.1: retransmitted INVITEs are absorbed, ACKs go to the TU.
            (_S.ACCEPTED, _I.RECV_REQUEST): _T(_S.ACCEPTED, (_A.ABSORB,)),
            (_S.ACCEPTED, _I.RECV_ACK): _T(_S.ACCEPTED, (_A.PASS_ACK, _A.STOP_2XX_RETRANSMIT)),
            (_S.ACCEPTED, _I.TU_2XX): _T(_S.ACCEPTED, (_A.SEND_RESPONSE,)),
            (_S.ACCEPTED, Timer.RETRANSMIT_2XX): _T(
                _S.ACCEPTED, (_A.RESEND_RESPONSE, _A.BACKOFF_2XX)
            ),
            (_S.ACCEPTED, Timer.L): _T(_S.TERMINATED, (_A.INFORM_ACK_TIMEOUT_IF_UNACKED,)),
            (_S.ACCEPTED, _I.TRANSPORT_ERROR): _T(_S.ACCEPTED, (_A.INFORM_TRANSPORT_ERROR,)),
            (_S.COMPLETED, _I.RECV_REQUEST): _T(_S.COMPLETED, (_A.RESEND_RESPONSE,)),
            (_S.COMPLETED, _I.RECV_ACK): _T(_S.CONFIRMED, (_A.START_I,)),
            (_S.COMPLETED, Timer.G): _T(_S.COMPLETED, (_A.RESEND_RESPONSE, _A.BACKOFF_G)),
            (_S.COMPLETED, Timer.H): _T(_S.TERMINATED, (_A.INFORM_ACK_TIMEOUT,)),
            (_S.COMPLETED, _I.TRANSPORT_ERROR): _T(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
            (_S.CONFIRMED, _I.RECV_REQUEST): _T(_S.CONFIRMED, (_A.ABSORB,)),
            (_S.CONFIRMED, _I.RECV_ACK): _T(_S.CONFIRMED, (_A.ABSORB,)),
            (_S.CONFIRMED, _I.TRANSPORT_ERROR): _T(_S.CONFIRMED, (_A.ABSORB,)),
            (_S.CONFIRMED, Timer.I): _T(_S.TERMINATED),
        }
    ),
    live=MappingProxyType(
        {
            _S.PROCEEDING: frozenset(),
            _S.ACCEPTED: frozenset({Timer.L, Timer.RETRANSMIT_2XX}),
            _S.COMPLETED: frozenset({Timer.G, Timer.H}),
            _S.CONFIRMED: frozenset({Timer.I}),
            _S.TERMINATED: frozenset(),
        }
    ),
)

# RFC 3261 §17.2.2, Figure 8.
NON_INVITE_SERVER = Machine(
    name="non-INVITE server transaction",
    initial=_S.TRYING,
    entry=(),
    table=MappingProxyType(
        {
            # §17.2.2: in Trying a retransmission is discarded (nothing to re-send yet).
            (_S.TRYING, _I.RECV_REQUEST): _T(_S.TRYING, (_A.ABSORB,)),
            (_S.TRYING, _I.TU_1XX): _T(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
            (_S.TRYING, _I.TU_2XX): _T(_S.COMPLETED, (_A.SEND_RESPONSE, _A.START_J)),
            (_S.TRYING, _I.TU_FINAL_NON2XX): _T(_S.COMPLETED, (_A.SEND_RESPONSE, _A.START_J)),
            (_S.TRYING, _I.TRANSPORT_ERROR): _T(_S.TRYING, (_A.ABSORB,)),
            (_S.PROCEEDING, _I.RECV_REQUEST): _T(_S.PROCEEDING, (_A.RESEND_RESPONSE,)),
            (_S.PROCEEDING, _I.TU_1XX): _T(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
            (_S.PROCEEDING, _I.TU_2XX): _T(_S.COMPLETED, (_A.SEND_RESPONSE, _A.START_J)),
            (_S.PROCEEDING, _I.TU_FINAL_NON2XX): _T(_S.COMPLETED, (_A.SEND_RESPONSE, _A.START_J)),
            (_S.PROCEEDING, _I.TRANSPORT_ERROR): _T(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
            (_S.COMPLETED, _I.RECV_REQUEST): _T(_S.COMPLETED, (_A.RESEND_RESPONSE,)),
            # §17.2.2: any other final response the TU passes in Completed is discarded.
            (_S.COMPLETED, _I.TU_2XX): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.TU_FINAL_NON2XX): _T(_S.COMPLETED, (_A.ABSORB,)),
            (_S.COMPLETED, _I.TRANSPORT_ERROR): _T(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
            (_S.COMPLETED, Timer.J): _T(_S.TERMINATED),
        }
    ),
    live=MappingProxyType(
        {
            _S.TRYING: frozenset(),
            _S.PROCEEDING: frozenset(),
            _S.COMPLETED: frozenset({Timer.J}),
            _S.TERMINATED: frozenset(),
        }
    ),
)
