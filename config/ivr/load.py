"""Reading IVR trees from the YAML files of a folder, with every problem named by file and line.

Each ``*.yaml`` file of the folder may hold several trees and holiday calendars::

    trees:
      main:                       # tree id, referenced by dialplan.yaml
        start: welcome
        timezone: America/New_York
        nodes:
          welcome: {type: play, prompt: "Thank you for calling.", next: menu}
          ...
    holidays:
      us: [2026-11-26, 12-25]     # a date, or month-day for every year

Tree ids and calendar names are shared by all files of the folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from config.ivr.checks import Known, check_tree
from config.ivr.nodes import NODE_TYPES, IvrNode
from config.ivr.schema import LANGUAGE_CODE, Strict, StrMap, TimeZoneName
from config.ivr.tree import HolidayCalendar, IvrTree, IvrTrees
from config.source import ConfigError, ConfigProblem, YamlDocument, load_yaml, validate

__all__ = ["load_ivr_trees", "parse_ivr_documents"]

_DAY = re.compile(r"^(?:(\d{4})-)?(\d{2})-(\d{2})$")


def _holiday(value: Any) -> Any:
    """A holiday is ``2026-11-26`` (that day) or ``12-25`` (every year); year 0 means yearly."""
    if isinstance(value, date):
        return (value.year, value.month, value.day)
    if isinstance(value, str):
        found = _DAY.match(value.strip())
        if found:
            year = int(found.group(1) or 0)
            month, day = int(found.group(2)), int(found.group(3))
            try:
                date(year or 2024, month, day)  # 2024 is a leap year: 02-29 recurs
            except ValueError:
                raise ValueError(f"{value!r} is not a day of the calendar") from None
            return (year, month, day)
        raise ValueError(f"{value!r} is not a date: write 2026-12-25, or 12-25 for every year")
    return value


class IvrFile(Strict):
    trees: Mapping[str, Any] = Field(default_factory=dict)
    holidays: Mapping[
        str, tuple[Annotated[tuple[int, int, int], BeforeValidator(_holiday)], ...]
    ] = Field(default_factory=dict)


class TreeSpec(Strict):
    start: str
    description: str = ""
    timezone: TimeZoneName = "UTC"
    languages: tuple[str, ...] = Field(default=("en",), min_length=1)
    variables: StrMap = Field(default_factory=dict)
    nodes: Mapping[str, Mapping[str, Any]] = Field(min_length=1)

    @field_validator("languages")
    @classmethod
    def _codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not LANGUAGE_CODE.match(code):
                raise ValueError(f"{code!r} is not a language code such as 'en' or 'pt-BR'")
        if len(set(value)) != len(value):
            raise ValueError("a language is listed twice")
        return value


def load_ivr_trees(
    directory: Path,
    *,
    queues: frozenset[str] | None,
    skills: frozenset[str] | None,
    prompts_dir: Path | None = None,
) -> IvrTrees:
    """Load every tree of the ``*.yaml`` files in ``directory`` (the configuration's ``ivr``
    folder); ``file:`` prompts are looked up in ``prompts_dir`` (default: the ``prompts`` folder
    next to ``directory``). Queue and skill names are checked against ``queues`` and ``skills``
    (``None`` skips that check). Raises ConfigError listing every problem of every file."""
    documents: list[YamlDocument] = []
    problems: list[ConfigProblem] = []
    if directory.is_dir():
        for path in sorted(directory.glob("*.yaml")):
            try:
                documents.append(load_yaml(path))
            except ConfigError as exc:
                problems.extend(exc.problems)
    try:
        trees = parse_ivr_documents(
            documents,
            queues=queues,
            skills=skills,
            prompts_dir=prompts_dir if prompts_dir is not None else directory.parent / "prompts",
        )
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (str(p.path), p.line or 0)))
    return trees


@dataclass(slots=True)
class _Parser:
    known_queues: frozenset[str] | None
    known_skills: frozenset[str] | None
    prompts_dir: Path
    problems: list[ConfigProblem] = field(default_factory=list)
    calendars: dict[str, HolidayCalendar] = field(default_factory=dict)
    defined_in: dict[str, Path] = field(default_factory=dict)

    def file(self, document: YamlDocument) -> IvrFile | None:
        if not isinstance(document.data, dict):
            self.problems.append(
                document.problem((), "an IVR file is a mapping with 'trees' (and 'holidays')")
            )
            return None
        try:
            return validate(IvrFile, document)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def holidays(self, document: YamlDocument, content: IvrFile) -> None:
        for name, days in content.holidays.items():
            if name in self.calendars:
                self.problems.append(
                    document.problem(
                        ("holidays", name),
                        f"holidays.{name}: calendar {name!r} is defined twice",
                    )
                )
                continue
            self.calendars[name] = HolidayCalendar(
                name=name,
                dates=frozenset(date(y, m, d) for y, m, d in days if y),
                yearly=frozenset((m, d) for y, m, d in days if not y),
            )

    def tree(self, document: YamlDocument, tree_id: str) -> IvrTree | None:
        location = ("trees", tree_id)
        if tree_id in self.defined_in:
            self.problems.append(
                document.problem(
                    location,
                    f"trees.{tree_id}: tree {tree_id!r} is already defined in "
                    f"{self.defined_in[tree_id].name}",
                )
            )
            return None
        self.defined_in[tree_id] = document.path
        try:
            spec = validate(TreeSpec, document, location)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None
        nodes: dict[str, IvrNode] = {}
        for node_id, raw in spec.nodes.items():
            node = self.node(document, (*location, "nodes", node_id), raw)
            if node is not None:
                nodes[node_id] = node
        if len(nodes) != len(spec.nodes):
            return None  # the graph checks would only repeat the problems found above
        known = Known(
            queues=self.known_queues,
            skills=self.known_skills,
            holidays=frozenset(self.calendars),
            prompts_dir=self.prompts_dir,
        )
        found = check_tree(document, tree_id, spec.start, spec.languages, nodes, known)
        if found:
            self.problems.extend(found)
            return None
        return IvrTree(
            tree_id=tree_id,
            source=document.path,
            start=spec.start,
            description=spec.description,
            timezone=spec.timezone,
            languages=spec.languages,
            variables=spec.variables,
            nodes=MappingProxyType(nodes),
            holidays=MappingProxyType(dict(self.calendars)),
            prompts_dir=self.prompts_dir,
        )

    def node(
        self, document: YamlDocument, location: tuple[str, ...], raw: Mapping[str, Any]
    ) -> IvrNode | None:
        kind = raw.get("type")
        where = ".".join(location)
        if kind is None:
            self.problems.append(
                document.problem(location, f"{where}.type: required setting is missing")
            )
            return None
        model = NODE_TYPES.get(str(kind))
        if model is None:
            expected = ", ".join(sorted(NODE_TYPES))
            self.problems.append(
                document.problem(
                    (*location, "type"),
                    f"{where}.type: unknown node type {kind!r} (expected one of: {expected})",
                )
            )
            return None
        try:
            return validate(model, document, location)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None


def parse_ivr_documents(
    documents: Sequence[YamlDocument],
    *,
    queues: frozenset[str] | None,
    skills: frozenset[str] | None,
    prompts_dir: Path,
) -> IvrTrees:
    """Build the trees of already parsed documents (see :func:`load_ivr_trees`)."""
    parser = _Parser(known_queues=queues, known_skills=skills, prompts_dir=prompts_dir)
    contents = [(document, parser.file(document)) for document in documents]
    for document, content in contents:  # calendars first: any tree may use any calendar
        if content is not None:
            parser.holidays(document, content)
    trees: dict[str, IvrTree] = {}
    for document, content in contents:
        if content is None:
            continue
        for tree_id in content.trees:
            tree = parser.tree(document, tree_id)
            if tree is not None:
                trees[tree_id] = tree
    if parser.problems:
        raise ConfigError(parser.problems)
    return IvrTrees(trees=MappingProxyType(trees))
