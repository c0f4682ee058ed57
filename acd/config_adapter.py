"""From the validated configuration (``config.queues``, ``config.settings``) to the ACD's types.

The configuration layer knows nothing of the ACD; this module is the one place that maps its
names (Asterisk's where they exist) to the engine's dataclasses.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from acd.engine import AcdEngine
from acd.feature_codes import FeatureCodeMap, FeatureCodes
from acd.model import (
    AgentProfile,
    CrossQueuePolicy,
    EngineSettings,
    EscalationStep,
    OfferFailure,
    QueueConfig,
    RingFailurePolicy,
    SkillRequirement,
    Strategy,
)
from acd.service import ServiceSettings
from config.queues import QueueFile, QueueSpec
from config.settings import Agent


def _needs(skills: dict[str, int]) -> tuple[SkillRequirement, ...]:
    return tuple(
        SkillRequirement(skill=skill, min_proficiency=level) for skill, level in skills.items()
    )


def queue_config(queue_id: str, spec: QueueSpec) -> QueueConfig:
    return QueueConfig(
        queue_id=queue_id,
        name=spec.name,
        required_skills=_needs(spec.skills),
        strategy=Strategy(spec.strategy),
        weight=spec.weight,
        service_level_percent=spec.service_level_target,
        service_level_seconds=spec.servicelevel,
        max_wait=spec.max_wait,
        max_length=spec.maxlen,
        wrapuptime=spec.wrapuptime,
        joinempty=spec.joinempty,
        leavewhenempty=spec.leavewhenempty,
        autopause=spec.autopause,
        ring_timeout=spec.timeout,
        retry=spec.retry,
        priority_aging=spec.priority_aging,
        sticky_wait=spec.sticky_wait,
        escalation=tuple(
            EscalationStep(
                after=step.after,
                relax_proficiency=step.relax_proficiency,
                add_skills=_needs(step.add_skills),
                overflow_queues=step.overflow,
                offer_callback=step.offer_callback,
                route_to=step.route_to,
            )
            for step in spec.escalation
        ),
        announce_frequency=spec.announce_frequency,
        announce_position=spec.announce_position,
        announce_holdtime=spec.announce_holdtime,
        exit_destination=spec.exit_destination,
        callback_attempts=spec.callbacks.attempts,
        callback_retry=spec.callbacks.retry,
        linear_order=spec.linear_order,
        ring_failures=RingFailurePolicy(
            counts=frozenset(OfferFailure(f) for f in spec.ring_failures.counts),
            pauses_at_once=frozenset(OfferFailure(f) for f in spec.ring_failures.pause_at_once),
        ),
    )


def queue_configs(queue_file: QueueFile) -> tuple[QueueConfig, ...]:
    return tuple(queue_config(queue_id, spec) for queue_id, spec in queue_file.queues.items())


def agent_profiles(agents: Iterable[Agent]) -> tuple[AgentProfile, ...]:
    return tuple(
        AgentProfile(
            agent_id=agent.id,
            name=agent.name,
            skills=dict(agent.skills),
            wrapuptime=agent.wrapuptime,
            sip_user=agent.sip_user,
            login_on_register=agent.login_on_register,
            logout_on_unregister=agent.logout_on_unregister,
        )
        for agent in agents
    )


def engine_settings(queue_file: QueueFile) -> EngineSettings:
    options = queue_file.acd
    return EngineSettings(
        offer_lease=options.offer_lease,
        cross_queue_policy=CrossQueuePolicy(options.cross_queue_policy),
        service_level_window=options.service_level_window,
        handle_time_samples=options.handle_time_samples,
        default_talk_time=options.default_talk_time,
        sticky_memory=options.sticky_memory,
    )


def service_settings(queue_file: QueueFile) -> ServiceSettings:
    return ServiceSettings(heartbeat=queue_file.acd.heartbeat)


def feature_code_map(queue_file: QueueFile, agents: Iterable[Agent]) -> FeatureCodeMap:
    spec = queue_file.feature_codes
    codes = FeatureCodes(
        login=spec.login,
        logout=spec.logout,
        pause=spec.pause,
        unpause=spec.unpause,
        default_pause_reason=spec.default_pause_reason,
        pause_reasons=dict(spec.pause_reasons),
    )
    return FeatureCodeMap(codes, agent_profiles(agents))


def build_engine(
    queue_file: QueueFile, agents: Iterable[Agent], rng: random.Random | None = None
) -> AcdEngine:
    """An engine for the configured queues and agents (all logged out)."""
    return AcdEngine(
        queue_configs(queue_file),
        agent_profiles(agents),
        rng=rng or random.Random(),
        settings=engine_settings(queue_file),
    )
