"""``crm.yaml``: what an admin writes, and every mistake reported as ``crm.yaml:LINE``."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.crm import CrmSettings, load_crm_settings
from config.source import ConfigError
from tests.crm.crm_db import OTHER_SECRET, SECRET

VALID = f"""\
webhooks:
  - name: salesforce
    url: https://crm.example.com/hooks/cxos
    secret: {SECRET}
    previous_secrets: [{OTHER_SECRET}]
    events: ["call.*", queue.joined, agent.state_changed]
    timeout: 5
    retry: {{initial_delay: 2, max_delay: 600, max_attempts: 8}}
    circuit_breaker: {{failure_threshold: 3, cooldown: 20}}
lookup:
  url: https://crm.example.com/api/customers/{{key}}
  timeout: 1.5
  cache_ttl: 120
  fields: {{name: customer.name, open_case: cases.0.id}}
  tier_priorities: {{gold: 5}}
  vip_priority: 9
redis_stream:
  stream: cxos:events
  maxlen: 50000
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "crm.yaml").write_text(text)
    return tmp_path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_crm_settings(write(tmp_path, text))
    return [str(p).replace(str(tmp_path) + "/", "") for p in caught.value.problems]


def test_a_complete_file_loads(tmp_path: Path) -> None:
    settings = load_crm_settings(write(tmp_path, VALID))
    [hook] = settings.webhooks
    assert hook.events == ("call.*", "queue.joined", "agent.state_changed")
    assert (hook.retry.max_attempts, hook.retry.multiplier) == (8, 2.0)
    assert hook.circuit_breaker.failure_threshold == 3
    assert SECRET not in repr(hook)  # secrets stay out of logs
    assert settings.lookup is not None and settings.lookup.fields["open_case"] == "cases.0.id"
    assert settings.redis_stream is not None and settings.redis_stream.maxlen == 50000


def test_no_file_means_no_crm_bridge(tmp_path: Path) -> None:
    assert load_crm_settings(tmp_path) == CrmSettings()


def test_a_bad_secret_names_its_line(tmp_path: Path) -> None:
    text = VALID.replace(f"secret: {SECRET}", "secret: not-a-secret")
    assert problems(tmp_path, text) == [
        "crm.yaml:4: webhooks.0.secret: a webhook secret starts with 'whsec_' followed by base64"
    ]


def test_bad_event_patterns_and_urls_name_their_lines(tmp_path: Path) -> None:
    text = VALID.replace('"call.*"', '"call.*.x"').replace(
        "https://crm.example.com/hooks/cxos", "ftp://crm.example.com/"
    )
    assert problems(tmp_path, text) == [
        "crm.yaml:3: webhooks.0.url: expected an http:// or https:// URL, "
        "got 'ftp://crm.example.com/'",
        "crm.yaml:6: webhooks.0.events.0: 'call.*.x' is not an event type, 'family.*' or '*'",
    ]


def test_duplicate_endpoint_names_point_at_the_second(tmp_path: Path) -> None:
    second = VALID.split("lookup:", maxsplit=1)[0].replace("webhooks:\n", "")
    text = VALID.replace("lookup:", second + "lookup:", 1)
    assert problems(tmp_path, text) == [
        "crm.yaml:10: webhooks.1.name: another endpoint is already named 'salesforce'"
    ]


def test_unknown_settings_and_inconsistent_retry_are_refused(tmp_path: Path) -> None:
    text = VALID.replace("timeout: 5", "timout: 5").replace("max_delay: 600", "max_delay: 1")
    assert problems(tmp_path, text) == [
        "crm.yaml:8: webhooks.0.retry: max_delay must not be below initial_delay",
        "crm.yaml:7: webhooks.0.timout: unknown setting (check the spelling)",
    ]
