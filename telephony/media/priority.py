"""The scheduling priority of the thread that runs the media engine (`media.nice`).

Media is paced: a tick that runs late reaches every caller as jitter. On a machine shared with
other work, a lower nice value for the media thread keeps its ticks on time. On Linux a nice
value belongs to a thread (setpriority(2) with a thread id, see sched(7)), so only the thread
that calls `apply_media_nice` (the event loop that runs the `MediaRunner`) changes, not the
recording writer or speech workers. Lowering the value below the current one needs
CAP_SYS_NICE or an RLIMIT_NICE that allows it (systemd: ``LimitNICE=``); without it the server
runs on at its old priority and says so in the log.
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)

__all__ = ["apply_media_nice"]


def apply_media_nice(nice: int) -> bool:
    """Set the calling thread's nice value to `nice`; whether it took effect."""
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None:
        logger.warning("media.nice %d not applied: this platform has no setpriority", nice)
        return False
    thread = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, thread)
        setpriority(os.PRIO_PROCESS, thread, nice)
    except PermissionError:
        logger.warning(
            "media.nice %d not applied: not permitted (a lower nice value needs CAP_SYS_NICE or "
            "RLIMIT_NICE, e.g. LimitNICE= under systemd); the media thread stays at nice %d",
            nice,
            os.getpriority(os.PRIO_PROCESS, thread),
        )
        return False
    except OSError as exc:
        logger.warning("media.nice %d not applied: %s", nice, exc)
        return False
    logger.info("media thread %d: nice %d (was %d)", thread, nice, before)
    return True
