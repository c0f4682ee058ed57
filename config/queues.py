"""``queues.yaml``: the ACD's queues, engine-wide options and agent feature codes.

Option names follow Asterisk's queues.conf where they mean the same thing, so an admin who knows
app_queue recognises them: ``strategy`` (Asterisk's names are accepted too: ``ringall``,
``leastrecent``, ``fewestcalls``, ``rrmemory``, ``linear``, ``random``), ``weight``,
``servicelevel``, ``maxlen`` (0: no limit), ``timeout`` (how long an agent's phone rings),
``retry``, ``wrapuptime``, ``joinempty``, ``leavewhenempty``, ``autopause`` (``yes`` pauses
after one unanswered offer, a number after that many in a row), ``announce-frequency``,
``announce-position``, ``announce-holdtime``, and the ``queue-*`` sound names for announcement
prompts. What app_queue lacks has plain names: ``skills`` (skill → minimum proficiency 1-5),
``service_level_target`` (percent), ``max_wait``, ``priority_aging``, ``sticky_wait``,
``escalation`` steps, ``callbacks`` and ``ring_failures``. ``musiconhold`` keeps Asterisk's name
but takes a WAV file (of the prompts folder) rather than a class. Durations are seconds::

    queues:
      sales:
        skills: {sales: 3}
        strategy: skill_weighted
        wrapuptime: 10
        escalation:
          - {after: 60, relax_proficiency: 2}
          - {after: 180, offer_callback: true}

This module only validates; ``acd.config_adapter`` turns the result into the ACD's own types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from config.ivr.checks import prompt_problems
from config.ivr.schema import Dtmf, Prompt
from config.settings import Agent, Strict
from config.source import ConfigError, ConfigProblem, YamlDocument, load_yaml, validate

__all__ = [
    "AcdOptions",
    "AnnouncementPrompts",
    "CallbackOptions",
    "EscalationStepSpec",
    "FeatureCodeSpec",
    "QueueFile",
    "QueueSpec",
    "RingFailureSpec",
    "load_queues",
]

StrategyName = Literal[
    "longest_idle",
    "ring_all",
    "round_robin",
    "fewest_calls",
    "least_talk_time",
    "linear",
    "random",
    "skill_weighted",
]
OfferFailureName = Literal["no_answer", "rejected", "busy", "unregistered"]

_ASTERISK_STRATEGIES = {
    "ringall": "ring_all",
    "leastrecent": "longest_idle",
    "fewestcalls": "fewest_calls",
    "rrmemory": "round_robin",
    "rrordered": "round_robin",
}
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def _strategy(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = _ASTERISK_STRATEGIES.get(value, value)
    if value not in get_args(StrategyName):
        ours = ", ".join(get_args(StrategyName))
        theirs = ", ".join(_ASTERISK_STRATEGIES)
        raise ValueError(f"unknown strategy {value!r}: use one of {ours} (or {theirs})")
    return value


def _autopause(value: Any) -> Any:
    # Asterisk: autopause=yes pauses a member who fails to answer once; no never pauses.
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, str) and value.lower() in ("yes", "no", "true", "false", "on", "off"):
        return 1 if value.lower() in ("yes", "true", "on") else 0
    return value


def _off_when_zero(value: Any) -> Any:
    # Asterisk writes 0 for "no limit" / "never"; so may the admin here.
    return None if value == 0 else value


Proficiency = Annotated[int, Field(ge=1, le=5)]
Seconds = Annotated[float, Field(ge=0)]
OptionalLimit = Annotated[Annotated[float, Field(gt=0)] | None, BeforeValidator(_off_when_zero)]


def _check_skills(value: Mapping[str, int]) -> Mapping[str, int]:
    for skill in value:
        if not _ID.match(skill):
            raise ValueError(f"skill name {skill!r}: use letters, digits, '_', '.', '-'")
    return value


SkillNeeds = Annotated[
    dict[str, Proficiency], AfterValidator(_check_skills), Field(default_factory=dict)
]


class EscalationStepSpec(Strict):
    """What changes once a caller has waited ``after`` seconds in the queue."""

    after: float = Field(gt=0)
    #: Lower every minimum proficiency by this many levels (never below 1).
    relax_proficiency: int = Field(default=0, ge=0, le=4)
    #: Also accept agents with these skills (skill -> minimum proficiency).
    add_skills: SkillNeeds
    #: Also accept agents who qualify for these queues.
    overflow: tuple[str, ...] = ()
    #: Offer the caller a callback that keeps their place.
    offer_callback: bool = False
    #: Take the caller out of the queue to this dial-plan destination (voicemail, IVR, number).
    route_to: str | None = Field(default=None, min_length=1)


def _one_key(value: str) -> str:
    if len(value) != 1:
        raise ValueError(f"{value!r}: one key of the keypad (0-9, * or #)")
    return value


class CallbackOptions(Strict):
    """Callbacks of a queue, and what a waiting caller hears when the queue offers one (an
    escalation step's ``offer_callback``).

    Each prompt is written as the IVR's are: text spoken by text-to-speech (``{caller_id}`` and
    the variables collected in the IVR may be used), ``{file: name.wav}`` from the prompts
    folder, a list of those, or one of those per language (``{en: ..., es: ...}``). The caller
    hears the version of the language they chose in the IVR, else the first one written.
    """

    #: Calls placed to reach the customer before the callback is given up.
    attempts: int = Field(default=3, ge=1, le=20)
    #: Seconds between attempts.
    retry: Seconds = 60.0
    #: The offer, played over the music on hold; it should name ``key``.
    offer: Prompt = Prompt.model_validate(
        "To be called back when an agent is free, keeping your place in line, press 1."
    )
    #: The key that takes the offer.
    key: Annotated[Dtmf, AfterValidator(_one_key)] = "1"
    #: Seconds the caller has to press ``key`` after the offer.
    choice_timeout: float = Field(default=10.0, gt=0, le=60)
    #: Played once the callback is registered, before the call ends.
    accepted: Prompt = Prompt.model_validate(
        "Thank you. We will call you back when an agent is free. Goodbye."
    )
    #: Played when the callback cannot be registered (no number to call back, queue full...);
    #: the caller keeps waiting.
    unavailable: Prompt = Prompt.model_validate(
        "Sorry, we cannot call you back. Please stay on the line."
    )

    def prompts(self) -> Iterable[tuple[str, Prompt]]:
        """Each prompt with its setting name."""
        return (
            ("offer", self.offer),
            ("accepted", self.accepted),
            ("unavailable", self.unavailable),
        )


class RingFailureSpec(Strict):
    """How an agent's failed offer counts toward ``autopause``."""

    #: Failures that add to the agent's streak of unanswered offers.
    counts: tuple[OfferFailureName, ...] = ("no_answer", "rejected", "busy")
    #: Failures that pause the agent at once (a phone that is not registered cannot ring).
    pause_at_once: tuple[OfferFailureName, ...] = ("unregistered",)


class AnnouncementPrompts(Strict):
    """Prompts of position and hold-time announcements, by Asterisk's sound names.

    Each is a WAV file name from the prompts folder (``*.wav``) or text spoken by text-to-speech.
    Numbers are spoken from the digit prompts in ``digits`` (``0.wav`` ... ``9.wav``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    youarenext: str = Field(default="You are now first in line.", alias="queue-youarenext")
    thereare: str = Field(default="You are caller number", alias="queue-thereare")
    callswaiting: str = Field(default="waiting.", alias="queue-callswaiting")
    holdtime: str = Field(default="The estimated hold time is", alias="queue-holdtime")
    minutes: str = Field(default="minutes.", alias="queue-minutes")
    seconds: str = Field(default="seconds.", alias="queue-seconds")
    thankyou: str = Field(default="Thank you for your patience.", alias="queue-thankyou")
    periodic: str | None = Field(default=None, alias="periodic-announce")
    digits: str = "digits"


class QueueSpec(Strict):
    """One queue."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = ""
    #: Skill -> minimum proficiency an agent needs; empty: any logged-in agent.
    skills: SkillNeeds
    strategy: Annotated[StrategyName, BeforeValidator(_strategy)] = "longest_idle"
    #: Added to callers' priority when an agent serves several queues (app_queue ``weight``).
    weight: int = Field(default=0, ge=0)
    #: Seconds within which a call counts as answered in time (app_queue ``servicelevel``).
    servicelevel: float = Field(default=20.0, gt=0)
    #: Percent of calls to answer within ``servicelevel``.
    service_level_target: float = Field(default=80.0, gt=0, le=100)
    #: Most callers waiting at once; 0 or absent: no limit.
    maxlen: Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(_off_when_zero)] = None
    #: Seconds a caller may wait before leaving to ``exit_destination``; 0 or absent: no limit.
    max_wait: OptionalLimit = None
    #: Seconds an agent's phone rings before the call goes to the next agent.
    timeout: float = Field(default=15.0, gt=0)
    #: Seconds before a call is offered again to an agent who did not take it.
    retry: Seconds = 5.0
    #: Seconds after each call before the agent gets the next one (agents may override).
    wrapuptime: Seconds = 0.0
    #: Callers may join when no agent could serve them (all logged out or paused).
    joinempty: bool = True
    #: Callers leave (to ``exit_destination``) when the last agent who could serve them goes.
    leavewhenempty: bool = False
    #: Pause an agent after this many unanswered offers in a row (yes: 1; no or 0: never).
    autopause: Annotated[int, BeforeValidator(_autopause), Field(ge=0)] = 0
    ring_failures: RingFailureSpec = RingFailureSpec()
    #: Seconds between position / hold-time announcements; 0 or absent: none.
    announce_frequency: OptionalLimit = Field(default=None, alias="announce-frequency")
    announce_position: bool = Field(default=True, alias="announce-position")
    announce_holdtime: bool = Field(default=True, alias="announce-holdtime")
    prompts: AnnouncementPrompts = AnnouncementPrompts()
    #: Seconds of waiting worth one priority point, so low-priority callers are served too.
    priority_aging: OptionalLimit = None
    #: Seconds a caller waits for the agent who served them last before anyone else may answer.
    sticky_wait: Seconds = 0.0
    #: Agent ids in the fixed order used by ``linear`` and ``round_robin``.
    linear_order: tuple[str, ...] = ()
    #: Where callers go on timeout, when the queue is full or empty (dial-plan destination).
    exit_destination: str | None = Field(default=None, min_length=1)
    escalation: tuple[EscalationStepSpec, ...] = ()
    callbacks: CallbackOptions = CallbackOptions()
    #: Record each call the queue connects to an agent, from the agent's answer until the call
    #: ends (transfers included), as ``stereo`` (caller left, agent right) or ``mixed`` (one
    #: channel); absent: calls are recorded only when a supervisor asks (the API).
    record: Literal["stereo", "mixed"] | None = None
    #: Music on hold of this queue's callers: a WAV file of the prompts folder (or an absolute
    #: path) instead of ``prompts/music-on-hold.wav``; checked to exist when loaded.
    musiconhold: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _steps_in_order(self) -> QueueSpec:
        afters = [step.after for step in self.escalation]
        if afters != sorted(set(afters)):
            raise ValueError(f"escalation steps must have strictly increasing 'after': {afters}")
        return self


CrossQueuePolicyName = Literal["longest_waiting", "priority_then_wait", "service_level"]


class AcdOptions(Strict):
    """Options of the whole ACD."""

    #: Seconds an agent stays reserved for an offer before their phone must ring.
    offer_lease: float = Field(default=5.0, gt=0)
    #: Which caller an agent serving several queues gets next.
    cross_queue_policy: CrossQueuePolicyName = "longest_waiting"
    #: Seconds of history the service level is computed over.
    service_level_window: float = Field(default=1800.0, gt=0)
    #: Talk time assumed for wait estimates until a queue has handled calls.
    default_talk_time: float = Field(default=180.0, gt=0)
    #: Recent calls per queue the average handle time is taken from.
    handle_time_samples: int = Field(default=50, ge=1)
    #: Customers remembered for routing to the agent who served them last.
    sticky_memory: int = Field(default=10_000, ge=0)
    #: Seconds between renewals of the shared-store claims on agents who are on a call.
    heartbeat: float = Field(default=10.0, gt=0)


class FeatureCodeSpec(Strict):
    """Numbers an agent dials from their softphone to control their state."""

    login: str = "*45"
    logout: str = "*46"
    pause: str = "*47"
    unpause: str = "*48"
    default_pause_reason: str = Field(default="break", min_length=1)
    #: Reason code dialled after the pause code (``*47*2``) -> pause reason.
    pause_reasons: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self) -> FeatureCodeSpec:
        codes = [self.login, self.logout, self.pause, self.unpause]
        for code in codes:
            if not re.fullmatch(r"[*#0-9]+", code):
                raise ValueError(f"feature code {code!r}: use digits, '*' and '#'")
            if any(other != code and other.startswith(code) for other in codes):
                raise ValueError(f"feature code {code!r} is the start of another code")
        if len(set(codes)) != len(codes):
            raise ValueError(f"feature codes must differ: {codes}")
        for code, reason in self.pause_reasons.items():
            if not code.isdigit() or not reason:
                raise ValueError(f"pause reason {code!r}: codes are digits, reasons are text")
        return self


class QueueFile(Strict):
    queues: dict[str, QueueSpec] = Field(default_factory=dict)
    acd: AcdOptions = AcdOptions()
    feature_codes: FeatureCodeSpec = FeatureCodeSpec()


def load_queues(path: Path, agents: Iterable[Agent] | None = None) -> QueueFile:
    """Read and check ``queues.yaml``; raise ConfigError listing every problem with its line.

    With ``agents``, names in ``linear_order`` must be agents, and every queue needs at least
    one agent who could ever serve it (otherwise its callers could only wait or leave).
    """
    document = load_yaml(path)
    queue_file = validate(QueueFile, document)
    problems = list(_reference_problems(queue_file, document))
    problems += _music_problems(queue_file, document, path.parent / "prompts")
    problems += _callback_prompt_problems(queue_file, document, path.parent / "prompts")
    if agents is not None:
        problems += _agent_problems(queue_file, document, tuple(agents))
    if problems:
        raise ConfigError(problems)
    return queue_file


def _reference_problems(queue_file: QueueFile, document: YamlDocument) -> Iterable[ConfigProblem]:
    queues = queue_file.queues
    for queue_id, spec in queues.items():
        if not _ID.match(queue_id):
            yield document.problem(
                ("queues", queue_id), f"queue id {queue_id!r}: use letters, digits, '_', '.', '-'"
            )
        for number, step in enumerate(spec.escalation):
            for target in step.overflow:
                where = ("queues", queue_id, "escalation", number, "overflow")
                if target == queue_id:
                    yield document.problem(where, f"queue {queue_id!r} cannot overflow to itself")
                elif target not in queues:
                    yield document.problem(
                        where, f"queue {queue_id!r} overflows to unknown queue {target!r}"
                    )


def _music_problems(
    queue_file: QueueFile, document: YamlDocument, prompts_dir: Path
) -> list[ConfigProblem]:
    problems = []
    for queue_id, spec in queue_file.queues.items():
        if spec.musiconhold is None:
            continue
        where = ("queues", queue_id, "musiconhold")
        music = prompts_dir / spec.musiconhold  # an absolute path stays as it is
        try:
            with music.open("rb") as handle:
                header = handle.read(12)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            problems.append(document.problem(where, f"music on hold {str(music)!r}: {reason}"))
            continue
        # RIFF....WAVE: the WAV container the prompt player reads.
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            problems.append(
                document.problem(where, f"music on hold {str(music)!r} is not a WAV file")
            )
    return problems


def _callback_prompt_problems(
    queue_file: QueueFile, document: YamlDocument, prompts_dir: Path
) -> list[ConfigProblem]:
    return [
        problem
        for queue_id, spec in queue_file.queues.items()
        for name, prompt in spec.callbacks.prompts()
        for problem in prompt_problems(
            prompt, document, ("queues", queue_id, "callbacks", name), prompts_dir
        )
    ]


def _agent_problems(
    queue_file: QueueFile, document: YamlDocument, agents: tuple[Agent, ...]
) -> list[ConfigProblem]:
    known = {agent.id for agent in agents}
    problems = []
    for queue_id, spec in queue_file.queues.items():
        for agent_id in spec.linear_order:
            if agent_id not in known:
                problems.append(
                    document.problem(
                        ("queues", queue_id, "linear_order"),
                        f"queue {queue_id!r}: linear_order names unknown agent {agent_id!r}",
                    )
                )
        if not any(_qualifies(agent.skills, spec, queue_file) for agent in agents):
            needs = ", ".join(f"{s}>={level}" for s, level in spec.skills.items())
            problems.append(
                document.problem(
                    ("queues", queue_id, "skills"),
                    f"queue {queue_id!r}: no agent has the skills it needs ({needs}), "
                    "even after its escalation steps",
                )
            )
    return problems


def _qualifies(skills: Mapping[str, int], spec: QueueSpec, queue_file: QueueFile) -> bool:
    """Whether an agent with ``skills`` could serve the queue at its most relaxed step."""
    relax = sum(step.relax_proficiency for step in spec.escalation)
    alternatives = [spec.skills]
    for step in spec.escalation:
        if step.add_skills:
            alternatives.append(step.add_skills)
        alternatives += [
            queue_file.queues[q].skills for q in step.overflow if q in queue_file.queues
        ]
    return any(
        all(skills.get(skill, 0) >= max(1, level - relax) for skill, level in needs.items())
        for needs in alternatives
    )
