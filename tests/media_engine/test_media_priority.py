"""`media.nice`: read from server.yaml, applied to the media thread alone, refused loudly."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from config.loader import default_config_dir, load_configuration
from config.source import ConfigError
from telephony.media.priority import apply_media_nice


def in_thread(nice: int) -> tuple[bool, int, int]:
    """Apply `nice` in a thread of its own; whether it took, its nice value and the caller's."""
    result: list[tuple[bool, int]] = []

    def media_thread() -> None:
        applied = apply_media_nice(nice)
        result.append((applied, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    thread = threading.Thread(target=media_thread)
    thread.start()
    thread.join()
    ((applied, value),) = result
    return applied, value, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_higher_nice_value_applies_to_the_media_thread_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    target = min(mine + 1, 19)
    with caplog.at_level(logging.INFO, logger="telephony.media.priority"):
        applied, value, after = in_thread(target)
    assert applied and value == target
    assert after == mine  # the calling thread keeps its own
    assert f"nice {target}" in caplog.text


def test_a_lower_nice_value_applies_or_says_why_not(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="telephony.media.priority"):
        applied, value, _ = in_thread(-20)
    if applied:  # CAP_SYS_NICE (or a generous RLIMIT_NICE) here
        assert value == -20
    else:
        assert "not permitted" in caplog.text and "CAP_SYS_NICE" in caplog.text
        assert value != -20


def write_media(tmp_path: Path, media: dict[str, object]) -> Path:
    config_dir = tmp_path / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    yaml = YAML()
    path = config_dir / "server.yaml"
    settings = yaml.load(path.read_text())
    settings["media"] = media
    with path.open("w") as handle:
        yaml.dump(settings, handle)
    return config_dir


def test_media_settings_are_read_and_checked(tmp_path: Path) -> None:
    defaults = load_configuration(default_config_dir()).server.media
    assert defaults.nice is None and defaults.comfort_noise_dbm0 is None
    media = load_configuration(
        write_media(tmp_path / "ok", {"nice": -5, "comfort_noise_dbm0": -65})
    ).server.media
    assert (media.nice, media.comfort_noise_dbm0) == (-5, -65)
    with pytest.raises(ConfigError, match="nice"):
        load_configuration(write_media(tmp_path / "bad", {"nice": 40}))
