"""Checks across the nodes of a tree, each problem reported at the line that causes it.

- every target names a node of the same tree;
- every node can be reached from the start node;
- no loop can run without the caller answering something (a silent caller must reach an end);
- prompt files exist in the prompts folder;
- queues, skills, holiday calendars and languages named by nodes exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from config.ivr.nodes import IvrNode
from config.ivr.schema import LANGUAGE_CODE, Prompt
from config.source import ConfigProblem, Location, YamlDocument

__all__ = ["Known", "check_tree", "prompt_problems"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """Names defined elsewhere in the configuration; ``None`` means "not checked"."""

    queues: frozenset[str] | None
    skills: frozenset[str] | None
    holidays: frozenset[str]
    prompts_dir: Path


def _dotted(location: Location) -> str:
    return ".".join(str(part) for part in location)


@dataclass(frozen=True, slots=True)
class _Tree:
    document: YamlDocument
    tree_id: str
    start: str
    languages: tuple[str, ...]
    nodes: Mapping[str, IvrNode]

    def at(self, node_id: str, *where: str | int) -> Location:
        return ("trees", self.tree_id, "nodes", node_id, *where)

    def problem(self, location: Location, message: str) -> ConfigProblem:
        return self.document.problem(location, f"{_dotted(location)}: {message}")


def check_tree(
    document: YamlDocument,
    tree_id: str,
    start: str,
    languages: tuple[str, ...],
    nodes: Mapping[str, IvrNode],
    known: Known,
) -> list[ConfigProblem]:
    tree = _Tree(document, tree_id, start, languages, nodes)
    problems: list[ConfigProblem] = []
    problems.extend(_targets(tree))
    problems.extend(_reachability(tree))
    problems.extend(_silent_loops(tree))
    problems.extend(_prompts(tree, known.prompts_dir))
    problems.extend(_names(tree, known))
    return problems


def _targets(tree: _Tree) -> Iterator[ConfigProblem]:
    if tree.start not in tree.nodes:
        yield tree.problem(
            ("trees", tree.tree_id, "start"),
            f"no node named {tree.start!r} in tree {tree.tree_id!r}",
        )
    for node_id, node in tree.nodes.items():
        for link in node.links():
            if link.target not in tree.nodes:
                yield tree.problem(
                    tree.at(node_id, *link.location),
                    f"no node named {link.target!r} in tree {tree.tree_id!r}",
                )


def _edges(tree: _Tree, *, silent_only: bool) -> dict[str, list[str]]:
    edges: dict[str, list[str]] = {node_id: [] for node_id in tree.nodes}
    for node_id, node in tree.nodes.items():
        for link in node.links():
            wanted = link.target in tree.nodes and not (silent_only and link.after_input)
            if wanted and link.target not in edges[node_id]:
                edges[node_id].append(link.target)
    return edges


def _reachability(tree: _Tree) -> Iterator[ConfigProblem]:
    if tree.start not in tree.nodes:
        return
    edges = _edges(tree, silent_only=False)
    seen = {tree.start}
    pending = [tree.start]
    while pending:
        for target in edges[pending.pop()]:
            if target not in seen:
                seen.add(target)
                pending.append(target)
    for node_id in tree.nodes:
        if node_id not in seen:
            yield tree.problem(
                tree.at(node_id),
                f"node {node_id!r} cannot be reached from the start node {tree.start!r}",
            )


def _silent_loops(tree: _Tree) -> Iterator[ConfigProblem]:
    """Cycles made only of edges taken without a valid answer from the caller.

    Depth-first search in file order; each back edge closes a cycle, reported once per set of
    nodes at the node where it was first entered.
    """
    edges = _edges(tree, silent_only=True)
    order = list(tree.nodes)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    reported: set[frozenset[str]] = set()
    for root in order:
        if root in state:
            continue
        path: list[str] = [root]
        iterators: list[Iterator[str]] = [iter(edges[root])]
        state[root] = 1
        while iterators:
            target = next(iterators[-1], None)
            if target is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            if state.get(target) == 1:
                cycle = path[path.index(target) :]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    route = " -> ".join([*cycle, target])
                    yield tree.problem(tree.at(target), f"loop without caller input: {route}")
            elif target not in state:
                state[target] = 1
                path.append(target)
                iterators.append(iter(edges[target]))


def _prompts(tree: _Tree, prompts_dir: Path) -> Iterator[ConfigProblem]:
    for node_id, node in tree.nodes.items():
        for location, prompt in node.prompts():
            where = tree.at(node_id, *location)
            for message in _missing_files(prompt, prompts_dir):
                yield tree.problem(where, message)
            if prompt.by_language:
                missing = [lang for lang in tree.languages if lang not in prompt.by_language]
                extra = [lang for lang in prompt.by_language if lang not in tree.languages]
                if missing:
                    yield tree.problem(
                        where,
                        f"no {_join(missing)} version of this prompt"
                        f" (the tree's languages are {_join(tree.languages)})",
                    )
                if extra:
                    yield tree.problem(
                        where,
                        f"language {_join(extra)} is not one of the tree's languages"
                        f" ({_join(tree.languages)})",
                    )


def _missing_files(prompt: Prompt, prompts_dir: Path) -> Iterator[str]:
    for item in prompt.all_items():
        if item.file is not None and not (prompts_dir / item.file).is_file():
            yield f"prompt file {item.file!r} not found in {prompts_dir}"


def prompt_problems(
    prompt: Prompt, document: YamlDocument, where: Location, prompts_dir: Path
) -> Iterator[ConfigProblem]:
    """Checks of a prompt written outside a tree (a queue's callback offer...), reported at
    ``where`` in ``document``: its files must be in ``prompts_dir``, and its languages, which
    no tree lists, must at least be language codes."""
    field = _dotted(where)
    for language in prompt.by_language:
        if not LANGUAGE_CODE.match(language):
            yield document.problem(
                (*where, language),
                f"{field}: {language!r} is not a language code such as 'en' or 'pt-BR'",
            )
    for missing in _missing_files(prompt, prompts_dir):
        yield document.problem(where, f"{field}: {missing}")


def _names(tree: _Tree, known: Known) -> Iterator[ConfigProblem]:
    for node_id, node in tree.nodes.items():
        if known.queues is not None:
            for location, queue in node.queue_refs():
                if queue not in known.queues:
                    yield tree.problem(tree.at(node_id, *location), f"no queue named {queue!r}")
        if known.skills is not None:
            for location, skill in node.skill_refs():
                if skill not in known.skills:
                    yield tree.problem(tree.at(node_id, *location), f"no skill named {skill!r}")
        for location, condition in node.condition_refs():
            if condition.holiday is not None and condition.holiday not in known.holidays:
                yield tree.problem(
                    tree.at(node_id, *location, "holiday"),
                    f"no holiday calendar named {condition.holiday!r}",
                )
        for location, language in node.language_refs():
            if language not in tree.languages:
                yield tree.problem(
                    tree.at(node_id, *location),
                    f"language {language!r} is not one of the tree's languages"
                    f" ({_join(tree.languages)})",
                )


def _join(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)
