"""Reading admin-edited YAML files so that every problem can be reported as ``file:line: problem``.

The files are read with ruamel.yaml's round-trip loader because it keeps the line and column of
every mapping key and sequence item; pydantic then validates the plain data, and its error locations
(a path of keys and indexes) are mapped back to the line where that value was written.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)

Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigProblem:
    """One thing wrong with a configuration file, with where it was written."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed YAML file: its plain data plus the ruamel tree that knows line numbers."""

    path: Path
    tree: Any

    @property
    def data(self) -> Any:
        return _plain(self.tree)

    def line_of(self, location: Location) -> int | None:
        """1-based line of the value at ``location`` (or of the nearest enclosing one)."""
        return line_of(self.tree, location)

    def problem(self, location: Location, message: str) -> ConfigProblem:
        return ConfigProblem(path=self.path, line=self.line_of(location), message=message)


def load_yaml(path: Path) -> YamlDocument:
    """Parse one YAML file; syntax errors become a ConfigError naming the line."""
    yaml = YAML(typ="rt")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(path=path, line=None, message=f"cannot read: {exc.strerror}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path=path, line=None, message="not UTF-8 text")]) from exc
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            [ConfigProblem(path=path, line=line, message=f"YAML syntax: {what}")]
        ) from exc
    except YAMLError as exc:
        raise ConfigError(
            [ConfigProblem(path=path, line=None, message=f"YAML syntax: {exc}")]
        ) from exc
    return YamlDocument(path=path, tree=tree if tree is not None else CommentedMap())


def line_of(tree: Any, location: Location) -> int | None:
    """Walk ``location`` into a ruamel tree and return the 1-based line of the deepest key found."""
    line: int | None = None
    node = tree
    for step in location:
        if isinstance(node, CommentedMap) and isinstance(step, str) and step in node:
            key_line, _col = node.lc.key(step)
            line = key_line + 1
            node = node[step]
        elif isinstance(node, CommentedSeq) and isinstance(step, int) and 0 <= step < len(node):
            item_line, _col = node.lc.item(step)
            line = item_line + 1
            node = node[step]
        else:
            break
    if line is None and isinstance(node, CommentedMap | CommentedSeq) and node.lc.line is not None:
        line = node.lc.line + 1
    return line


@dataclass(frozen=True, slots=True, kw_only=True)
class RetiredSetting:
    """A setting that no longer exists but that files written for an older version may still
    carry: it is dropped with a warning at its line, rather than failing the whole file as an
    unknown setting."""

    location: Location
    why: str
    """What replaced it, for the warning."""


def without_retired(document: YamlDocument, retired: Iterable[RetiredSetting]) -> YamlDocument:
    """`document` without the `retired` settings it carries, each logged as a warning
    (``file:line: setting: ...``); `document` itself when it carries none."""
    tree: Any = None
    for setting in retired:
        *parents, key = setting.location
        holder = _node_at(document.tree, parents)
        if not isinstance(holder, CommentedMap) or key not in holder:
            continue
        name = ".".join(str(step) for step in setting.location)
        message = f"{name}: no longer a setting, ignored ({setting.why}); remove it"
        logger.warning("%s", document.problem(setting.location, message))
        if tree is None:
            tree = copy.deepcopy(document.tree)  # the deep copy keeps every line number
        del _node_at(tree, parents)[key]
    return document if tree is None else YamlDocument(document.path, tree)


def _node_at(tree: Any, location: Sequence[str | int]) -> Any:
    node = tree
    for step in location:
        if isinstance(node, CommentedMap) and step in node:
            node = node[step]
        else:
            return None
    return node


def validate(model: type[ModelT], document: YamlDocument, location: Location = ()) -> ModelT:
    """Validate the part of ``document`` at ``location`` against a pydantic model.

    Every validation error is turned into a ConfigProblem at the line where the offending value (or
    the mapping missing a key) was written.
    """
    node: Any = document.data
    for step in location:
        node = node[step]
    try:
        return model.model_validate(node)
    except ValidationError as exc:
        raise ConfigError(list(problems_from(exc, document, location))) from exc


def problems_from(
    exc: ValidationError, document: YamlDocument, prefix: Location = ()
) -> Iterable[ConfigProblem]:
    for error in exc.errors(include_url=False):
        loc = prefix + tuple(error["loc"])
        field = ".".join(str(part) for part in loc) or "(top level)"
        yield document.problem(loc, f"{field}: {_describe(error)}")


def _describe(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "required setting is missing"
    if kind == "extra_forbidden":
        return "unknown setting (check the spelling)"
    message = str(error.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return message


def _plain(node: Any) -> Any:
    """Convert a ruamel tree into plain dicts/lists so models see ordinary Python values."""
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node
