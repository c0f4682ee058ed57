"""A CRM record's ``skills``: the caller's own needs, as names or with a minimum proficiency,
applied at queue arrival like the IVR's queue-node skills."""

from __future__ import annotations

from config.crm import LookupSettings
from crm_bridge.lookup import map_answer, record_from_variables, routing_attributes


def _settings() -> LookupSettings:
    return LookupSettings.model_validate(
        {"url": "http://127.0.0.1:9/customers", "language_skills": {"fr": "french"}}
    )


def test_a_list_of_skill_names_needs_each_at_proficiency_one_or_the_level_given() -> None:
    record = map_answer({"skills": ["billing", "mortgage:4"], "language": "fr"}, {})
    assert dict(record.skills) == {"billing": 1, "mortgage": 4}
    routing = routing_attributes(record, _settings())
    assert dict(routing.skills) == {"billing": 1, "mortgage": 4, "french": 1}


def test_a_mapping_gives_each_skill_its_minimum_proficiency() -> None:
    answer = {"customer": {"needs": {"billing": 3, "french": 4}}, "language": "fr"}
    record = map_answer(answer, {"skills": "customer.needs"})
    routing = routing_attributes(record, _settings())
    assert dict(routing.skills) == {"billing": 3, "french": 4}  # the record's level for French


def test_levels_outside_one_to_five_or_not_numbers_are_left_out() -> None:
    record = map_answer({"skills": {"billing": 7, "loans": "high", "cards": True, "ok": "2"}}, {})
    assert dict(record.skills) == {"ok": 2}
    assert dict(map_answer({"skills": "nonsense"}, {}).skills) == {"nonsense": 1}
    assert dict(map_answer({"skills": 42}, {}).skills) == {}


def test_skills_travel_as_text_through_screen_pop_and_ivr_variables() -> None:
    record = map_answer({"name": "Ada", "skills": {"billing": 3, "french": 1}}, {})
    fields = record.as_fields()
    assert fields["skills"] == "billing:3,french"
    variables = {f"crm.{name}": value for name, value in fields.items()} | {"crm.found": "true"}
    again = record_from_variables(variables)
    assert again is not None and dict(again.skills) == {"billing": 3, "french": 1}
