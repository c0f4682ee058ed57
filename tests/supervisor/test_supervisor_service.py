"""api.yaml settings with file:line errors, and the API as a component on a real socket."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import aiohttp
import pytest

from config.api import Role, load_api_settings
from config.loader import default_config_dir, load_configuration
from config.settings import ApiSettings
from config.source import ConfigError
from cxos.bus import EventBus
from supervisor_api.service import SupervisorService
from tests.supervisor.supervisor_app import FakeActions

API_YAML = """\
tokens:
  - name: wallboard
    role: supervisor
    token: wallboard-token-0123456789
  - name: alice
    role: agent
    agent_id: alice
    token_sha256: {digest}
queues:
  sales:
    service_level_seconds: 30
wallboard:
  waiting: {{warn: 2, alarm: 4}}
"""


def write_api_yaml(directory: Path, text: str) -> Path:
    path = directory / "api.yaml"
    path.write_text(text)
    return path


def test_api_yaml_loads_tokens_targets_and_thresholds(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"alice-secret-token-0000").hexdigest()
    write_api_yaml(tmp_path, API_YAML.format(digest=digest))
    settings = load_api_settings(tmp_path)
    assert [(t.name, t.role) for t in settings.tokens] == [
        ("wallboard", Role.SUPERVISOR),
        ("alice", Role.AGENT),
    ]
    assert settings.tokens[1].digest == digest
    assert settings.targets_for("sales").service_level_seconds == 30
    assert settings.targets_for("other").service_level_seconds == 20
    assert settings.wallboard.waiting.alarm == 4


def test_missing_api_yaml_means_defaults_without_tokens(tmp_path: Path) -> None:
    assert load_api_settings(tmp_path).tokens == ()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("tokens:\n  - name: x\n    role: boss\n    token: abcdefghijklmnop\n", 3, "role"),
        ("tokens:\n  - name: x\n    role: agent\n    token: abcdefghijklmnop\n", 2, "agent_id"),
        ("tokens:\n  - name: x\n    role: admin\n    token: short\n", 4, "at least 16"),
        ("wallboard:\n  waiting: {warn: 5, alarm: 1}\n", 2, "alarm must be >= warn"),
        ("timezone: Mars/Olympus\n", None, "unknown time zone"),
        ("colour: red\n", 1, "unknown setting"),
    ],
)
def test_api_yaml_mistakes_name_file_and_line(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    path = write_api_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_api_settings(tmp_path)
    (problem,) = caught.value.problems
    assert problem.path == path
    if line is not None:
        assert problem.line == line
    assert message in problem.message


async def test_service_serves_on_the_configured_address_and_reloads_tokens(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "conf"
    shutil.copytree(default_config_dir(), directory)
    write_api_yaml(directory, API_YAML.format(digest="ab" * 32))
    loaded = load_configuration(directory)
    server = loaded.server.model_copy(update={"api": ApiSettings(host="127.0.0.1", port=0)})
    configuration = dataclasses.replace(loaded, server=server)
    service = SupervisorService(configuration, EventBus(clock=lambda: 0.0), FakeActions())
    await service.start()
    try:
        (url,) = service.urls
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/health") as response:
                assert response.status == 200
            auth = {"Authorization": "Bearer wallboard-token-0123456789"}
            async with http.get(f"{url}/api/agents", headers=auth) as response:
                agents = (await response.json())["agents"]
                # Configured agents appear before any event mentions them.
                assert {a["agent_id"] for a in agents} >= {"alice", "bob", "carol"}
            write_api_yaml(
                directory, "tokens:\n  - {name: n, role: admin, token: new-token-0123456789}\n"
            )
            service.reconfigure(configuration)
            async with http.get(f"{url}/api/agents", headers=auth) as response:
                assert response.status == 401
            write_api_yaml(directory, "tokens: [oops\n")
            service.reconfigure(configuration)  # invalid: logged, the running tokens stay
            new = {"Authorization": "Bearer new-token-0123456789"}
            async with http.get(f"{url}/api/agents", headers=new) as response:
                assert response.status == 200
    finally:
        await service.stop(1.0)
    assert service.urls == []
