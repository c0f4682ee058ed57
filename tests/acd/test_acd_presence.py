"""Agents with login_on_register follow their softphone's registrations (RFC 3261 §10.3)."""

from __future__ import annotations

import asyncio

from acd.model import AgentProfile, QueueConfig
from acd.presence import DevicePresence, PresenceAction, PresenceChange
from tests.acd.acd_service_fixtures import VirtualClock, make_node, run_virtual

FOLLOWS = AgentProfile(
    agent_id="alice", sip_user="1001", login_on_register=True, logout_on_unregister=True
)
LOGIN_ONLY = AgentProfile(agent_id="bob", sip_user="1002", login_on_register=True)
MANUAL = AgentProfile(agent_id="carol", sip_user="1003")


def _login(agent_id: str) -> PresenceAction:
    return PresenceAction(agent_id, PresenceChange.LOGIN)


def _logout(agent_id: str) -> PresenceAction:
    return PresenceAction(agent_id, PresenceChange.LOGOUT)


def test_the_first_contact_logs_in_and_the_last_one_gone_logs_out() -> None:
    presence = DevicePresence([FOLLOWS, LOGIN_ONLY, MANUAL])
    assert presence.contact_added("1001", "sip:1001@10.0.0.5:5060") == _login("alice")
    assert presence.contact_added("1001", "sip:1001@10.0.0.9:5062") is None  # a second phone
    assert presence.contact_gone("1001", "sip:1001@10.0.0.5:5060") is None  # one still there
    assert presence.registered("1001")
    assert presence.contact_gone("1001", "sip:1001@10.0.0.9:5062") == _logout("alice")
    assert not presence.registered("1001")
    assert presence.contact_gone("1001", "sip:1001@10.0.0.9:5062") is None  # already gone


def test_each_option_does_only_its_half() -> None:
    presence = DevicePresence([LOGIN_ONLY, MANUAL])
    assert presence.contact_added("1002", "c") == _login("bob")
    assert presence.contact_gone("1002", "c") is None  # no logout_on_unregister
    assert presence.contact_added("1003", "c") is None  # neither option
    assert presence.contact_added("9999", "c") is None  # not an agent's account


def test_a_refresh_never_logs_anyone_in_but_counts_for_the_logout() -> None:
    presence = DevicePresence([FOLLOWS])
    presence.contact_refreshed("1001", "c")  # registered before this process saw it added
    assert presence.contact_added("1001", "d") is None
    assert presence.contact_gone("1001", "c") is None
    assert presence.contact_gone("1001", "d") == _logout("alice")


def test_a_reload_changes_who_follows_their_phone() -> None:
    presence = DevicePresence([MANUAL])
    assert presence.contact_added("1003", "c") is None
    presence.configure([AgentProfile(agent_id="carol", sip_user="1003", logout_on_unregister=True)])
    assert presence.contact_gone("1003", "c") == _logout("carol")


def test_the_service_logs_agents_in_and_out_as_their_phones_register() -> None:
    async def main(clock: VirtualClock) -> None:
        n = make_node(clock, [QueueConfig(queue_id="q")], [FOLLOWS, MANUAL])
        await n.service.start()
        n.service.contact_added("1001", "c1")
        n.service.contact_added("1003", "c3")
        await n.service.drain()
        engine = n.service.engine
        assert engine.agent_state("alice").value == "available"
        assert engine.agents["alice"].reason == "registered"
        assert engine.agent_state("carol").value == "logged_out"

        await n.service.enqueue("x1", "q")  # alice on a call: the logout waits for its end
        n.service.ringing("x1", "alice")
        n.service.answered("x1", "alice")
        n.service.contact_gone("1001", "c1")
        await n.service.drain()
        assert engine.agent_state("alice").value == "on_call"
        await asyncio.sleep(30)
        n.service.agent_hung_up("alice")
        await n.service.drain()
        assert engine.agent_state("alice").value == "logged_out"
        assert engine.agents["alice"].reason == "logout"

        n.service.contact_added("1001", "c1")  # the phone is back
        await n.service.drain()
        assert engine.agent_state("alice").value == "available"
        await n.service.stop()

    run_virtual(main)
