"""Validated IVR trees as the interpreter uses them: immutable, so a reload can swap the whole set
while calls in progress keep walking the tree object they started with."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from config.ivr.nodes import IvrNode

__all__ = ["HolidayCalendar", "IvrTree", "IvrTrees"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HolidayCalendar:
    """Days on which a business is closed: fixed dates, and dates that recur every year."""

    name: str
    dates: frozenset[date] = frozenset()
    #: (month, day) pairs observed every year, such as (12, 25).
    yearly: frozenset[tuple[int, int]] = frozenset()

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        return day in self.dates or (day.month, day.day) in self.yearly


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrTree:
    """One call flow. ``nodes`` keeps the order in which they were written."""

    tree_id: str
    source: Path
    start: str
    description: str
    timezone: str
    #: Languages of the prompts; the first one is used until the caller chooses another.
    languages: tuple[str, ...]
    #: Variables every call starts with (the call's own values take precedence).
    variables: Mapping[str, str]
    nodes: Mapping[str, IvrNode]
    holidays: Mapping[str, HolidayCalendar]
    #: Folder that ``file:`` prompts are relative to.
    prompts_dir: Path

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def node(self, node_id: str) -> IvrNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"tree {self.tree_id!r} has no node {node_id!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrTrees:
    """Every IVR tree of a configuration, by id."""

    trees: Mapping[str, IvrTree]

    def __contains__(self, tree_id: object) -> bool:
        return tree_id in self.trees

    def __iter__(self) -> Iterator[str]:
        return iter(self.trees)

    def __len__(self) -> int:
        return len(self.trees)

    def get(self, tree_id: str) -> IvrTree | None:
        return self.trees.get(tree_id)

    def __getitem__(self, tree_id: str) -> IvrTree:
        return self.trees[tree_id]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.trees)
