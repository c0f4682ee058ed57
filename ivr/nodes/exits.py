"""Nodes that end the walk through a tree by handing the call on: queue, transfer, callback."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from config.ivr.nodes import MAX_LEVEL, MIN_LEVEL, CallbackNode, QueueNode, TransferNode
from ivr.actions import EnqueueCall, IvrAction, OfferCallback, Transfer
from ivr.events import Destination
from ivr.templates import render

__all__ = ["Exit", "exit_for"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    actions: tuple[IvrAction, ...]
    destination: Destination
    target: str


def exit_for(
    node: QueueNode | TransferNode | CallbackNode, variables: Mapping[str, str], call_id: str
) -> Exit:
    snapshot = MappingProxyType(dict(variables))
    if isinstance(node, TransferNode):
        target = render(node.target, variables)
        return Exit(
            actions=(
                Transfer(kind=node.kind, target=target, trunk=node.trunk, variables=snapshot),
            ),
            destination="transfer",
            target=target,
        )
    priority = _priority(node.priority, variables, call_id)
    skills = MappingProxyType(_skills(node, variables, call_id))
    attributes = MappingProxyType(
        {name: render(value, variables) for name, value in node.attributes.items()}
    )
    if isinstance(node, QueueNode):
        action: IvrAction = EnqueueCall(
            queue=node.queue,
            priority=priority,
            skills=skills,
            attributes=attributes,
            variables=snapshot,
        )
        return Exit(actions=(action,), destination="queue", target=node.queue)
    action = OfferCallback(
        queue=node.queue,
        number=render(node.number, variables),
        priority=priority,
        skills=skills,
        attributes=attributes,
        variables=snapshot,
    )
    return Exit(actions=(action,), destination="callback", target=node.queue)


def _skills(
    node: QueueNode | CallbackNode, variables: Mapping[str, str], call_id: str
) -> dict[str, int]:
    """The caller's own skills with their levels, templates filled (see ``QueueNode``)."""
    levels: dict[str, int] = {}
    for template, wanted in node.skill_levels():
        skill = render(template, variables).strip()
        if not skill:
            continue  # taken from a variable the caller's path did not set
        level = wanted if isinstance(wanted, int) else _level(skill, wanted, variables, call_id)
        levels[skill] = max(levels.get(skill, 0), level)
    return levels


def _level(skill: str, template: str, variables: Mapping[str, str], call_id: str) -> int:
    text = render(template, variables).strip()
    try:
        level = int(text)
    except ValueError:
        logger.warning(
            "call %s: level %r of skill %r is not a number; using 1", call_id, text, skill
        )
        return MIN_LEVEL
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        logger.warning(
            "call %s: level %d of skill %r is outside %d..%d",
            call_id,
            level,
            skill,
            MIN_LEVEL,
            MAX_LEVEL,
        )
    return min(MAX_LEVEL, max(MIN_LEVEL, level))


def _priority(value: int | str, variables: Mapping[str, str], call_id: str) -> int:
    if isinstance(value, int):
        return value
    text = render(value, variables).strip()
    try:
        return int(text) if text else 0
    except ValueError:
        logger.warning("call %s: priority %r is not a whole number; using 0", call_id, text)
        return 0
