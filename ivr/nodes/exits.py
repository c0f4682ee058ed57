"""Nodes that end the walk through a tree by handing the call on: queue, transfer, callback."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from config.ivr.nodes import CallbackNode, QueueNode, TransferNode
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
    if isinstance(node, QueueNode):
        return Exit(
            actions=(
                EnqueueCall(
                    queue=node.queue,
                    priority=_priority(node.priority, variables, call_id),
                    skills=tuple(
                        skill for skill in (render(s, variables) for s in node.skills) if skill
                    ),
                    attributes=MappingProxyType(
                        {name: render(value, variables) for name, value in node.attributes.items()}
                    ),
                    variables=snapshot,
                ),
            ),
            destination="queue",
            target=node.queue,
        )
    if isinstance(node, TransferNode):
        target = render(node.target, variables)
        return Exit(
            actions=(
                Transfer(kind=node.kind, target=target, trunk=node.trunk, variables=snapshot),
            ),
            destination="transfer",
            target=target,
        )
    return Exit(
        actions=(
            OfferCallback(
                queue=node.queue, number=render(node.number, variables), variables=snapshot
            ),
        ),
        destination="callback",
        target=node.queue,
    )


def _priority(value: int | str, variables: Mapping[str, str], call_id: str) -> int:
    if isinstance(value, int):
        return value
    text = render(value, variables).strip()
    try:
        return int(text) if text else 0
    except ValueError:
        logger.warning("call %s: priority %r is not a whole number; using 0", call_id, text)
        return 0
