"""Which trunk an INVITE comes from, and the call rate limit that comes with it."""

from __future__ import annotations

import pydantic
import pytest

from config.settings import Trunk
from telephony.sip.guard import TrunkLimit
from telephony.trunks import MATCH_CACHE_SIZE, TrunkTable

CARRIER = Trunk(id="carrier", sources=("192.0.2.0/24",), max_calls_per_second=80)
PBX = Trunk(id="pbx", sources=("192.0.2.128/25", "2001:db8::/32"))


def test_the_most_specific_network_wins_and_mapped_ipv4_counts_as_ipv4() -> None:
    table = TrunkTable.build([CARRIER, PBX])
    assert table.match("192.0.2.10") is CARRIER
    assert table.match("192.0.2.200") is PBX
    assert table.match("::ffff:192.0.2.10") is CARRIER
    assert table.match("[2001:db8::7]") is PBX
    assert table.match("198.51.100.1") is None
    assert table.match("not an address") is None


def test_each_trunk_brings_its_call_rate_limit() -> None:
    table = TrunkTable.build([CARRIER, PBX])
    assert table.limit("192.0.2.10") == TrunkLimit(trunk_id="carrier", calls_per_second=80.0)
    assert table.limit("192.0.2.200") == TrunkLimit(trunk_id="pbx", calls_per_second=500.0)
    assert table.limit("198.51.100.1") is None


def test_answers_stay_right_past_the_remembered_sources() -> None:
    table = TrunkTable.build([CARRIER])
    sources = [f"10.{n // 256}.{n % 256}.1" for n in range(MATCH_CACHE_SIZE + 10)]
    for _ in range(2):
        assert all(table.match(source) is None for source in sources)
        assert table.match("192.0.2.99") is CARRIER


@pytest.mark.parametrize("rate", [0, -5])
def test_a_trunk_rate_limit_must_be_positive(rate: float) -> None:
    with pytest.raises(pydantic.ValidationError, match="max_calls_per_second"):
        Trunk(id="carrier", sources=("192.0.2.1",), max_calls_per_second=rate)
