"""Small helpers the benchmark scripts share to report their figures: a Markdown table for
docs/benchmarks.md (written with ``--markdown FILE``, pasted by ``run_all.py``), and the load
average, which every figure measured on a shared machine should carry.

Imported by the scripts in this directory (run as ``python benchmarks/NAME.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. ``0.52 0.61 0.40``."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # not available on this platform
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, numeric_from: int = 1
) -> str:
    """A GitHub Markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path | None, text: str) -> None:
    """Write the fragment ``run_all.py`` pastes into the script's marked region (nothing when
    the script was not asked for one)."""
    if path is not None:
        path.write_text(text.rstrip("\n") + "\n")
