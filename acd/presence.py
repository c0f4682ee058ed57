"""Agents logged in and out by their softphones' registrations (``login_on_register``).

Asterisk users expect a queue member to follow their device: a phone that registers is ready
for calls, one whose registration is gone is not. The registrar reports each contact it binds to
an address of record (the agent's SIP user) and each contact removed or expired (RFC 3261
§10.3); this core keeps the live contacts of every SIP user and says which agent to log in (their
phone's first contact appeared) or out (its last one went). A phone with several contacts, or
two phones on one account, logs the agent out only when the last is gone. A refresh never logs
anyone in: an agent who logged out by hand while their phone stays registered stays out.

Sans-IO: the asyncio service feeds it the registrar's events and applies the answers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from acd.model import AgentProfile


class PresenceChange(enum.Enum):
    LOGIN = "login"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class PresenceAction:
    agent_id: str
    change: PresenceChange


class DevicePresence:
    """Live contacts per SIP user, and the agents whose state follows them."""

    __slots__ = ("_agents", "_contacts")

    def __init__(self, agents: Iterable[AgentProfile] = ()) -> None:
        self._agents: Mapping[str, AgentProfile] = {}
        self._contacts: dict[str, set[str]] = {}
        self.configure(agents)

    def configure(self, agents: Iterable[AgentProfile]) -> None:
        """The agents as configured now (after a reload): who follows their phone."""
        self._agents = {
            agent.sip_user: agent
            for agent in agents
            if agent.sip_user is not None
            and (agent.login_on_register or agent.logout_on_unregister)
        }

    def registered(self, sip_user: str) -> bool:
        return bool(self._contacts.get(sip_user))

    def contact_added(self, sip_user: str, contact: str) -> PresenceAction | None:
        """A new binding: the agent is logged in if it is their phone's first live contact."""
        contacts = self._contacts.setdefault(sip_user, set())
        first = not contacts
        contacts.add(contact)
        agent = self._agents.get(sip_user)
        if first and agent is not None and agent.login_on_register:
            return PresenceAction(agent.agent_id, PresenceChange.LOGIN)
        return None

    def contact_refreshed(self, sip_user: str, contact: str) -> None:
        """A binding registered again: known from now on, nobody logged in for it."""
        self._contacts.setdefault(sip_user, set()).add(contact)

    def contact_gone(self, sip_user: str, contact: str) -> PresenceAction | None:
        """A binding removed or expired: the agent is logged out if it was the last one."""
        contacts = self._contacts.get(sip_user)
        if contacts is None or contact not in contacts:
            return None
        contacts.discard(contact)
        if contacts:
            return None
        del self._contacts[sip_user]
        agent = self._agents.get(sip_user)
        if agent is not None and agent.logout_on_unregister:
            return PresenceAction(agent.agent_id, PresenceChange.LOGOUT)
        return None
