"""A queue node's ``skills``: the caller's own needs, as a list or with levels, from variables."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ivr.actions import EnqueueCall
from tests.ivr.ivr_helpers import Harness, of_type, tree_from_yaml
from tests.ivr.test_ivr_validation import at, problems

TREE = """
trees:
  main:
    start: q
    nodes:
      q:
        type: queue
        queue: support
        skills:
          spanish: 3
          "{product}": "{level}"
          "{unset}": 2
          billing: 1
"""


def _enqueued(tmp_path: Path, text: str, **variables: str) -> dict[str, int]:
    call = Harness(tree_from_yaml(tmp_path, text))
    call.start(variables=variables)
    (enqueue,) = of_type(call.log, EnqueueCall)
    return dict(enqueue.skills)


def test_levels_and_names_come_from_the_tree_and_the_callers_variables(tmp_path: Path) -> None:
    # billing is named twice (by the product variable at 4, literally at 1): the higher wins;
    # a name from a variable that is not set is left out.
    assert _enqueued(tmp_path, TREE, product="billing", level="4") == {"spanish": 3, "billing": 4}
    assert _enqueued(tmp_path, TREE, product="mortgage", level="2") == {
        "spanish": 3,
        "mortgage": 2,
        "billing": 1,
    }


def test_a_level_that_is_no_proficiency_is_logged_and_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ivr.nodes.exits"):
        assert _enqueued(tmp_path, TREE, product="mortgage", level="high")["mortgage"] == 1
        assert _enqueued(tmp_path, TREE, product="mortgage", level="9")["mortgage"] == 5
    assert "level 'high' of skill 'mortgage' is not a number" in caplog.text
    assert "level 9 of skill 'mortgage' is outside 1..5" in caplog.text


def test_the_list_form_asks_for_each_skill_at_level_one(tmp_path: Path) -> None:
    text = TREE.replace(
        """        skills:
          spanish: 3
          "{product}": "{level}"
          "{unset}": 2
          billing: 1
""",
        """        skills: [spanish, "{product}"]
""",
    )
    assert _enqueued(tmp_path, text, product="billing") == {"spanish": 1, "billing": 1}


def test_unknown_skills_and_bad_levels_are_reported_with_their_line(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: q
        nodes:
          q:
            type: queue
            queue: support
            skills:
              klingon: 2
              spanish: 7
              billing: high
              "{product}": "{level}"
    """
    found = problems(tmp_path, text)
    assert (
        f"{at(tmp_path, text, 'spanish: 7')}: trees.main.nodes.q.skills.spanish:"
        " proficiency 7 is outside 1..5" in found[0]
    )
    assert f"{at(tmp_path, text, 'billing: high')}: trees.main.nodes.q.skills.billing" in found[1]
    assert "'high' is not a proficiency" in found[1]
    text = text.replace("spanish: 7", "spanish: 5").replace("billing: high", "billing: 2")
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'klingon: 2')}: trees.main.nodes.q.skills.klingon:"
        " no skill named 'klingon'"
    ]
