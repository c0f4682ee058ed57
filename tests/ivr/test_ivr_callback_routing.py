"""A callback node is routed like a queue node: priority, the caller's skills and attributes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.actions import Hangup, OfferCallback
from ivr.simulate import main as simulate
from tests.ivr.ivr_helpers import Harness, of_type, tree_from_yaml
from tests.ivr.test_ivr_validation import at, problems

TREE = """
trees:
  main:
    start: cb
    nodes:
      cb:
        type: callback
        queue: support
        number: "{callback_number}"
        priority: "{priority}"
        skills:
          spanish: 3
          "{product}": "{level}"
          "{unset}": 2
        attributes: {product: "{product}", reason: outage}
"""


def _offer(tmp_path: Path, text: str, **variables: str) -> OfferCallback:
    call = Harness(tree_from_yaml(tmp_path, text))
    out = call.start(variables=variables)
    assert of_type(out, Hangup) == [Hangup(reason="callback")]
    (offer,) = of_type(out, OfferCallback)
    return offer


def test_the_callback_carries_priority_skills_and_attributes_from_the_variables(
    tmp_path: Path,
) -> None:
    offer = _offer(
        tmp_path,
        TREE,
        callback_number="+15550009999",
        priority="7",
        product="billing",
        level="4",
    )
    assert (offer.queue, offer.number, offer.priority) == ("support", "+15550009999", 7)
    # A skill named by a variable the caller's path did not set is left out.
    assert dict(offer.skills) == {"spanish": 3, "billing": 4}
    assert dict(offer.attributes) == {"product": "billing", "reason": "outage"}
    assert offer.variables["product"] == "billing"


def test_a_callback_without_routing_options_asks_for_nothing_more(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: cb
        nodes:
          cb: {type: callback, queue: support}
    """
    offer = _offer(tmp_path, text)
    assert (offer.priority, dict(offer.skills), dict(offer.attributes)) == (0, {}, {})


def test_the_list_form_asks_for_each_skill_at_level_one(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: cb
        nodes:
          cb: {type: callback, queue: support, skills: [spanish, "{product}"]}
    """
    assert dict(_offer(tmp_path, text, product="billing").skills) == {"spanish": 1, "billing": 1}


def test_unknown_skills_and_bad_levels_of_a_callback_are_reported_with_their_line(
    tmp_path: Path,
) -> None:
    text = """
    trees:
      main:
        start: cb
        nodes:
          cb:
            type: callback
            queue: support
            priority: high priority
            skills:
              klingon: 2
              spanish: 7
    """
    found = problems(tmp_path, text)
    assert found[0] == (
        f"{at(tmp_path, text, 'priority: high')}: trees.main.nodes.cb.priority: 'high priority'"
        " is not a priority: a whole number or a template such as '{priority}'"
    )
    assert (
        f"{at(tmp_path, text, 'spanish: 7')}: trees.main.nodes.cb.skills.spanish:"
        " proficiency 7 is outside 1..5" in found[-1]
    )
    text = text.replace("spanish: 7", "spanish: 5").replace("high priority", '"{priority}"')
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'klingon: 2')}: trees.main.nodes.cb.skills.klingon:"
        " no skill named 'klingon'"
    ]


def test_the_simulator_shows_how_the_callback_will_be_routed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    tree_from_yaml(config, TREE)
    (config / "queues.yaml").write_text(
        "queues:\n  support: {skills: {support: 1, spanish: 1, billing: 1}}\n"
    )
    code = simulate(
        [
            "main",
            "--config",
            str(config),
            "--var",
            "priority=2",
            "--var",
            "product=billing",
            "--var",
            "level=5",
            "--var",
            "callback_number=5551234",
        ]
    )
    output = capsys.readouterr().out
    assert code == 0, output
    assert (
        "callback to 5551234 from queue 'support' with priority 2, skills spanish 3, billing 5,"
        " attributes product=billing, reason=outage" in output
    )
