"""The caller's own skills on their way to the ACD: the IVR's, then the CRM's on top."""

from __future__ import annotations

from types import MappingProxyType

from crm_bridge.lookup import RoutingAttributes
from cxos.call_flow import QueueStep, with_crm_routing


def _routing(*skills: str) -> RoutingAttributes:
    return RoutingAttributes(
        priority=0,
        skills=MappingProxyType(dict.fromkeys(skills, 1)),
        preferred_agent=None,
        screen_pop=MappingProxyType({}),
    )


def test_the_crm_language_skill_joins_the_ivrs_skills() -> None:
    step = QueueStep("support", skills=MappingProxyType({"mortgage": 3}))
    routed = with_crm_routing(step, _routing("french"))
    assert dict(routed.skills) == {"mortgage": 3, "french": 1}
    assert routed.attributes["crm.skills"] == "french"


def test_the_ivrs_level_for_the_same_skill_is_kept() -> None:
    step = QueueStep("support", skills=MappingProxyType({"french": 4}))
    assert dict(with_crm_routing(step, _routing("french")).skills) == {"french": 4}


def test_an_unknown_language_adds_no_skill() -> None:
    assert dict(with_crm_routing(QueueStep("support"), _routing()).skills) == {}


def test_the_crms_own_skills_join_with_their_proficiency() -> None:
    step = QueueStep("support", skills=MappingProxyType({"mortgage": 3, "billing": 4}))
    routing = RoutingAttributes(
        priority=0,
        skills=MappingProxyType({"billing": 2, "insurance": 3, "french": 1}),
        preferred_agent=None,
        screen_pop=MappingProxyType({}),
    )
    routed = with_crm_routing(step, routing)
    # The stricter level of a skill both name; the CRM's others as it gives them.
    assert dict(routed.skills) == {"mortgage": 3, "billing": 4, "insurance": 3, "french": 1}
    assert routed.attributes["crm.skills"] == "billing:2,insurance:3,french"
