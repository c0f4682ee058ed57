"""Erlang C (M/M/N) and the contact-center day's report: what ``cc_day.py`` measured beside
what Erlang C predicts for the same traffic.

Pure: no I/O. Imported by ``cc_day.py`` (run as ``python benchmarks/cc_day.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ErlangC:
    """Erlang C (M/M/N) for ``agents`` agents offered ``traffic`` erlangs (arrival rate × mean
    handle time) with mean handle time ``aht`` seconds."""

    agents: int
    traffic: float
    aht: float

    @property
    def wait_probability(self) -> float:
        """P(wait > 0): the Erlang C formula, from Erlang B by the recurrence
        B(0) = 1, B(k) = A·B(k−1) / (k + A·B(k−1)), then C = N·B / (N − A·(1 − B))."""
        n, a = self.agents, self.traffic
        if a >= n:
            return 1.0  # no steady state: the queue grows without bound
        b = 1.0
        for k in range(1, n + 1):
            b = a * b / (k + a * b)
        return n * b / (n - a * (1 - b))

    def service_level(self, seconds: float) -> float:
        """Share of callers answered within ``seconds``: 1 − P_w · e^(−(N − A)·t / AHT)."""
        n, a = self.agents, self.traffic
        if a >= n:
            return 0.0
        return 1 - self.wait_probability * math.exp(-(n - a) * seconds / self.aht)

    @property
    def asa(self) -> float:
        """Average speed of answer, seconds: P_w · AHT / (N − A)."""
        n, a = self.agents, self.traffic
        if a >= n:
            return math.inf
        return self.wait_probability * self.aht / (n - a)

    @property
    def occupancy(self) -> float:
        return min(1.0, self.traffic / self.agents)


@dataclass(frozen=True, slots=True, kw_only=True)
class DayResult:
    """What one run of ``cc_day.py`` measured, over its window."""

    agents: int
    minutes: float
    window_s: float
    offered: int
    answered: int
    abandoned: int
    service_level: float | None
    asa: float | None
    abandon_rate: float | None
    aht: float | None
    occupancy: float | None
    sl_seconds: float
    predicted: ErlangC | None
    """Erlang C for the arrival rate measured in the window and the AHT of every call."""
    server_cpu_pct: float


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} %"


def _s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def rows(result: DayResult) -> list[tuple[str, str, str]]:
    p = result.predicted
    inputs = "(input)" if p else "-"
    return [
        (
            "callers offered / answered / abandoned",
            f"{result.offered} / {result.answered} / {result.abandoned}",
            "-",
        ),
        ("arrival rate", f"{result.offered / result.window_s * 60:.1f} calls/min", inputs),
        ("mean handle time (every call)", _s(result.aht), inputs),
        ("traffic (arrival rate × AHT)", f"{p.traffic:.1f} erlangs" if p else "-", inputs),
        ("agent occupancy", _pct(result.occupancy), _pct(p.occupancy * 100) if p else "-"),
        (
            f"service level ({result.sl_seconds:g} s)",
            _pct(result.service_level),
            _pct(p.service_level(result.sl_seconds) * 100, 2) if p else "-",
        ),
        ("callers who wait at all", "-", _pct(p.wait_probability * 100, 2) if p else "-"),
        ("ASA", _s(result.asa, 2), _s(p.asa, 2) if p else "-"),
        ("abandon rate", _pct(result.abandon_rate), "0 % (callers never give up)"),
    ]


def comparison_text(table: list[tuple[str, str, str]]) -> str:
    """``rows`` as the aligned text table the script prints."""
    lines = [f"\n{'':32s} {'measured':>18s}  Erlang C\n"]
    lines.extend(
        f"{name:32s} {measured:>18s}  {predicted}\n" for name, measured, predicted in table
    )
    return "".join(lines)
