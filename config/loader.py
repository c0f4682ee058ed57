"""Loading a whole configuration directory into one immutable Configuration.

Layout of a configuration directory (every file optional; missing ones take embedded defaults):

- ``server.yaml``   — listening sockets, registrar, security, RTP ports, API, storage
- ``trunks.yaml``   — ``trunks:`` list of carriers/PBXs allowed to send calls
- ``agents.yaml``   — ``agents:`` list of agents and their softphone credentials
- ``dialplan.yaml`` — ``numbers:`` dialled number → IVR tree or queue
- ``queues.yaml``   — ``queues:`` queues, ACD options, agent feature codes (see config.queues)
- ``ivr/*.yaml``    — ``trees:`` IVR trees (see config.ivr)
- ``crm.yaml``      — webhooks, CRM look-up, Redis event stream (see config.crm)
- ``api.yaml``      — API tokens and roles, wallboard thresholds, queue targets (see config.api)

All problems of all files are collected before failing, so an admin fixes them in one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationInfo, field_validator

from config.agent_prompts import PhonePrompts, phone_prompt_problems
from config.api import API_FILE, ApiAccessSettings
from config.crm import CrmSettings, load_crm_settings
from config.ivr import IvrTrees, load_ivr_trees
from config.queues import QueueFile, load_queues
from config.settings import RETIRED_SERVER_SETTINGS, Agent, Dialplan, ServerSettings, Strict, Trunk
from config.source import (
    ConfigError,
    ConfigProblem,
    RetiredSetting,
    YamlDocument,
    load_yaml,
    validate,
    without_retired,
)
from config.speech_languages import check_speech_languages

T = TypeVar("T", bound=BaseModel)


class TrunkList(Strict):
    trunks: tuple[Trunk, ...] = ()
    #: The trunk calls out go through when none is named (IVR transfers, callbacks); none: the
    #: first trunk with an ``outbound`` section.
    default_outbound: str | None = None

    @field_validator("default_outbound")
    @classmethod
    def _default_outbound(cls, value: str | None, info: ValidationInfo) -> str | None:
        trunks: tuple[Trunk, ...] = info.data.get("trunks", ())
        if value is not None:
            trunk = next((t for t in trunks if t.id == value), None)
            if trunk is None:
                raise ValueError(f"no trunk with id {value!r}")
            if trunk.outbound is None:
                raise ValueError(f"trunk {value!r} has no 'outbound' section")
        return value


class AgentList(Strict):
    agents: tuple[Agent, ...] = ()
    #: What agents' phones hear on calls placed from them (see config.agent_prompts).
    phone_prompts: PhonePrompts = PhonePrompts()


@dataclass(frozen=True, slots=True, kw_only=True)
class Configuration:
    """Everything the server runs on; replaced as a whole on reload, never mutated."""

    directory: Path
    server: ServerSettings
    trunks: tuple[Trunk, ...]
    agents: tuple[Agent, ...]
    dialplan: Dialplan
    #: Names of IVR trees and queues known to this configuration (for cross-reference checks).
    ivr_trees: frozenset[str] = field(default_factory=frozenset)
    queues: frozenset[str] = field(default_factory=frozenset)
    #: The IVR trees themselves; immutable, so a call keeps the tree it started with on reload.
    ivr: IvrTrees = field(default_factory=lambda: IvrTrees(trees={}))
    #: Queues, ACD options and agent feature codes from ``queues.yaml``.
    queue_file: QueueFile = field(default_factory=QueueFile)
    #: API tokens, wallboard thresholds and queue targets from ``api.yaml``.
    api: ApiAccessSettings = field(default_factory=ApiAccessSettings)
    #: Webhooks, CRM look-up and the Redis event stream from ``crm.yaml``.
    crm: CrmSettings = field(default_factory=CrmSettings)
    #: The id of the trunk calls out use when none is named (``trunks.yaml``), or None.
    default_outbound: str | None = None
    #: What agents' phones hear on calls placed from them (``agents.yaml``).
    phone_prompts: PhonePrompts = field(default_factory=PhonePrompts)

    def agent_by_sip_user(self, user: str) -> Agent | None:
        for agent in self.agents:
            if agent.sip_user == user:
                return agent
        return None


def default_config_dir() -> Path:
    """The configuration shipped inside the package, used by ``cxos run`` with no --config."""
    return Path(str(resources.files("config") / "defaults"))


@dataclass(slots=True)
class _Collector:
    problems: list[ConfigProblem] = field(default_factory=list)

    def section(
        self,
        directory: Path,
        name: str,
        model: type[T],
        default: T,
        retired: tuple[RetiredSetting, ...] = (),
    ) -> tuple[T, YamlDocument | None]:
        path = directory / name
        if not path.exists():
            return default, None
        try:
            document = without_retired(load_yaml(path), retired)
            return validate(model, document), document
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return default, None


def load_configuration(directory: Path) -> Configuration:
    """Load and cross-check a configuration directory; raise ConfigError listing every problem."""
    if not directory.is_dir():
        raise ConfigError([ConfigProblem(path=directory, line=None, message="not a directory")])
    collect = _Collector()
    server, _ = collect.section(
        directory, "server.yaml", ServerSettings, ServerSettings(), RETIRED_SERVER_SETTINGS
    )
    trunks, trunk_doc = collect.section(directory, "trunks.yaml", TrunkList, TrunkList())
    agents, agent_doc = collect.section(directory, "agents.yaml", AgentList, AgentList())
    dialplan, dialplan_doc = collect.section(directory, "dialplan.yaml", Dialplan, Dialplan())
    api, _ = collect.section(directory, API_FILE, ApiAccessSettings, ApiAccessSettings())
    try:
        crm = load_crm_settings(directory)
    except ConfigError as exc:
        collect.problems.extend(exc.problems)
        crm = CrmSettings()
    queues_file = directory / "queues.yaml"
    queue_file = QueueFile()
    if queues_file.exists():
        try:
            queue_file = load_queues(queues_file, agents.agents if agent_doc is not None else None)
        except ConfigError as exc:
            collect.problems.extend(exc.problems)
    # Names even from a file that failed validation, so references to its queues are still checked.
    queues = frozenset(queue_file.queues) or frozenset(
        _names_in_file(queues_file, "queues", collect, report=False)
    )
    skills = frozenset(skill for agent in agents.agents for skill in agent.skills)
    try:
        ivr = load_ivr_trees(
            directory / "ivr",
            # Without a queues file there is nothing to check queue names against yet.
            queues=queues if queues_file.exists() else None,
            skills=skills,
        )
    except ConfigError as exc:
        collect.problems.extend(exc.problems)
        ivr = IvrTrees(trees={})
    ivr_trees = frozenset(ivr.trees)
    collect.problems.extend(check_speech_languages(ivr, server.speech))

    if trunk_doc is not None:
        _unique(trunks.trunks, lambda t: t.id, "trunk id", trunk_doc, "trunks", collect)
    if agent_doc is not None:
        _unique(agents.agents, lambda a: a.id, "agent id", agent_doc, "agents", collect)
        _unique(agents.agents, lambda a: a.sip_user, "sip_user", agent_doc, "agents", collect)
        collect.problems.extend(
            phone_prompt_problems(agents.phone_prompts, agent_doc, directory / "prompts")
        )
    if dialplan_doc is not None:
        for number, entry in dialplan.numbers.items():
            if entry.ivr is not None and entry.ivr not in ivr_trees:
                collect.problems.append(
                    dialplan_doc.problem(
                        ("numbers", number), f"number {number!r}: no IVR tree named {entry.ivr!r}"
                    )
                )
            if entry.queue is not None and entry.queue not in queues:
                collect.problems.append(
                    dialplan_doc.problem(
                        ("numbers", number), f"number {number!r}: no queue named {entry.queue!r}"
                    )
                )
    if collect.problems:
        raise ConfigError(collect.problems)
    return Configuration(
        directory=directory,
        server=server,
        trunks=trunks.trunks,
        agents=agents.agents,
        dialplan=dialplan,
        ivr_trees=ivr_trees,
        queues=queues,
        ivr=ivr,
        queue_file=queue_file,
        api=api,
        crm=crm,
        default_outbound=trunks.default_outbound,
        phone_prompts=agents.phone_prompts,
    )


def _unique(
    items: tuple[Any, ...],
    key: Callable[[Any], str],
    what: str,
    document: YamlDocument,
    section: str,
    collect: _Collector,
) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        value = key(item)
        if value in seen:
            collect.problems.append(
                document.problem((section, index), f"duplicate {what} {value!r}")
            )
        seen.add(value)


def _names_in_file(
    path: Path, section: str, collect: _Collector, *, report: bool = True
) -> Iterator[str]:
    """Ids of the items listed under ``section`` (a mapping of id → definition)."""
    if not path.exists():
        return
    try:
        document = load_yaml(path)
    except ConfigError as exc:
        if report:
            collect.problems.extend(exc.problems)
        return
    data = document.data
    entries = data.get(section) if isinstance(data, dict) else None
    if entries is None:
        return
    if not isinstance(entries, dict):
        if not report:
            return
        collect.problems.append(
            document.problem((section,), f"'{section}' must be a mapping of id to definition")
        )
        return
    yield from (str(name) for name in entries)
