"""A broken IVR tree never goes live: the server refuses to start on it, and a reload (SIGHUP or
the API) keeps the running trees; a good reload swaps every tree at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.ivr import MenuNode
from config.loader import default_config_dir, load_configuration
from cxos.app import Application

#: A menu choice of the shipped tree, and the same choice leading nowhere.
GOOD = "            set: {department: sales}\n            next: sales_queue\n"
BROKEN = "            set: {department: sales}\n            next: sales_queeu\n"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(default_config_dir(), target)
    return target


def _break(config_dir: Path) -> tuple[Path, int]:
    """Point a main-menu choice at a node that does not exist; the file and line of the fault."""
    tree_file = config_dir / "ivr" / "main.yaml"
    text = tree_file.read_text(encoding="utf-8")
    assert GOOD in text
    broken = text.replace(GOOD, BROKEN)
    tree_file.write_text(broken, encoding="utf-8")
    return tree_file, broken.splitlines().index(BROKEN.splitlines()[1]) + 1


def _cxos(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cxos.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def test_check_config_prints_the_broken_tree_and_fails(config_dir: Path, tmp_path: Path) -> None:
    tree_file, line = _break(config_dir)
    result = _cxos("check-config", str(config_dir), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"{tree_file}:{line}: trees.main.nodes.main_menu.choices.0.next:"
        " no node named 'sales_queeu' in tree 'main'\n"
    )


def test_the_server_refuses_to_start_on_a_broken_tree(config_dir: Path, tmp_path: Path) -> None:
    tree_file, line = _break(config_dir)
    result = _cxos("run", "--config", str(config_dir), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert (
        f"{tree_file}:{line}: trees.main.nodes.main_menu.choices.0.next:"
        " no node named 'sales_queeu' in tree 'main'"
    ) in result.stderr
    # The dial plan's numbers that lead to the broken tree are reported too.
    assert "refusing to start: " in result.stderr


def test_a_reload_with_a_broken_tree_keeps_the_running_trees(config_dir: Path) -> None:
    app = Application(configuration=load_configuration(config_dir))
    running = app.configuration.ivr
    tree_file, line = _break(config_dir)
    problem, *numbers_leading_there = app.reload_configuration()
    assert numbers_leading_there
    assert str(problem) == (
        f"{tree_file}:{line}: trees.main.nodes.main_menu.choices.0.next:"
        " no node named 'sales_queeu' in tree 'main'"
    )
    assert app.configuration.ivr is running

    # Fixed, with new wording: the next reload swaps the whole set of trees.
    text = tree_file.read_text(encoding="utf-8").replace(BROKEN, GOOD)
    tree_file.write_text(text.replace("For sales, press 1", "To buy, press 1"), encoding="utf-8")
    assert app.reload_configuration() == []
    swapped = app.configuration.ivr
    assert swapped is not running
    menus = [tree.nodes["main_menu"] for tree in (running["main"], swapped["main"])]
    assert all(isinstance(menu, MenuNode) for menu in menus)
    old, new = (menu.greet_long.items[0].text or "" for menu in menus if isinstance(menu, MenuNode))
    # A call that started on the old tree holds that object, which a reload never changes.
    assert old.startswith("For sales, press 1") and new.startswith("To buy, press 1")
