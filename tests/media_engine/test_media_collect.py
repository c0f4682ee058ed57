"""Digit collection with a fake clock: max digits, terminator, first and inter-digit timeouts."""

from __future__ import annotations

import pytest

from telephony.media.collect import CollectFinishedError, CollectResult, DigitCollector
from telephony.media.playout import Playback, silence
from telephony.rtp.g711 import Law


def test_collection_ends_at_max_digits() -> None:
    collector = DigitCollector(max_digits=3, now=0.0)
    assert collector.feed("1", 1.0) is None
    assert collector.next_deadline == 4.0  # inter-digit timeout from the last key
    assert collector.feed("2", 2.0) is None
    assert collector.feed("3", 2.5) == CollectResult(digits="123", reason="max_digits")
    with pytest.raises(CollectFinishedError):
        collector.feed("4", 3.0)


def test_terminator_ends_without_being_part_of_the_digits() -> None:
    collector = DigitCollector(max_digits=10, now=0.0, terminator="#")
    collector.feed("4", 0.5)
    assert collector.feed("#", 0.7) == CollectResult(digits="4", reason="terminator")


def test_first_and_inter_digit_timeouts() -> None:
    silent = DigitCollector(max_digits=4, now=10.0, first_timeout=5.0)
    assert silent.on_timer(14.9) is None
    assert silent.on_timer(15.0) == CollectResult(digits="", reason="no_input")
    slow = DigitCollector(max_digits=4, now=0.0, inter_digit_timeout=2.0)
    slow.feed("9", 1.0)
    assert slow.on_timer(2.9) is None
    assert slow.on_timer(3.0) == CollectResult(digits="9", reason="timeout")
    assert slow.next_deadline is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_digits": 0},
        {"max_digits": 2, "terminator": "x"},
        {"max_digits": 2, "first_timeout": 0},
    ],
)
def test_bad_collection_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DigitCollector(now=0.0, **kwargs)  # type: ignore[arg-type]


def test_playback_runs_prompts_in_order_and_loops_music() -> None:
    once = Playback(1, ((b"a", b"b"), (), (b"c",)))
    assert [once.next_frame() for _ in range(4)] == [b"a", b"b", b"c", None]
    assert once.played_seconds == pytest.approx(0.06)
    music = Playback(2, ((b"x", b"y"),), loop=True)
    assert [music.next_frame() for _ in range(5)] == [b"x", b"y", b"x", b"y", b"x"]
    with pytest.raises(ValueError):
        Playback(3, ((),), loop=True)
    assert len(silence(Law.ALAW, 0.5)) == 25 and silence(Law.ALAW, 0.02)[0] == b"\xd5" * 160
