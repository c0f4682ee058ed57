"""The machine a benchmark ran on, in one line, so every printed figure carries its context.

python benchmarks/machine.py
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    platform: str
    """``platform.platform()``: kernel and C library."""
    python: str
    """Implementation and version, e.g. ``CPython 3.11.2``."""
    cpu_model: str
    """``model name`` from /proc/cpuinfo, else what ``platform`` knows."""
    cores: int
    """Logical CPUs this process may run on (its affinity mask), else all of them."""

    def __str__(self) -> str:
        return (
            f"machine: {self.platform}; {self.python}; {self.cpu_model}; "
            f"{self.cores} core{'s' if self.cores != 1 else ''}"
        )


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def this_machine() -> Machine:
    return Machine(
        platform=platform.platform(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        cpu_model=cpu_model(),
        cores=core_count(),
    )


if __name__ == "__main__":
    sys.stdout.write(f"{this_machine()}\n")
