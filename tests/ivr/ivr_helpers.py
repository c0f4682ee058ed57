"""Shared helpers for IVR tests: trees from YAML text, a fake clock, scripted sessions."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from config.ivr import IvrTree, load_ivr_trees
from ivr.actions import Play
from ivr.inputs import CallStarted, DigitsReceived, PromptFinished, SpeechRecognized
from ivr.interpreter import IvrSession

T = TypeVar("T")

QUEUES = frozenset({"sales", "support", "billing"})
SKILLS = frozenset({"sales", "support", "billing", "spanish"})
#: A Tuesday, 15:00 UTC = 10:00 in New York.
TUESDAY_MORNING = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def write_tree_files(directory: Path, files: Mapping[str, str]) -> Path:
    folder = directory / "ivr"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return folder


def tree_from_yaml(directory: Path, text: str, tree_id: str = "main") -> IvrTree:
    folder = write_tree_files(directory, {"tree.yaml": text})
    return load_ivr_trees(folder, queues=QUEUES, skills=SKILLS)[tree_id]


class Harness:
    """One IVR session driven by hand with a fake clock (seconds, starting at 1000)."""

    def __init__(self, tree: IvrTree, *, call_id: str = "call-1") -> None:
        self.session = IvrSession(tree, call_id=call_id)
        self.now = 1000.0
        self.log: list[object] = []

    def _record(self, outputs: list[Any]) -> list[Any]:
        self.log.extend(outputs)
        return outputs

    def start(
        self,
        *,
        at: datetime = TUESDAY_MORNING,
        caller_id: str = "+15555550100",
        variables: Mapping[str, str] | None = None,
    ) -> list[Any]:
        event = CallStarted(
            caller_id=caller_id,
            dialed_number="100",
            started_at=at,
            variables=dict(variables or {}),
        )
        return self._record(self.session.handle(event, self.now))

    def send(self, event: Any) -> list[Any]:
        return self._record(self.session.handle(event, self.now))

    def press(self, digits: str) -> list[Any]:
        return self.send(DigitsReceived(digits=digits))

    def say(self, text: str, confidence: float = 0.9, **kw: Any) -> list[Any]:
        return self.send(SpeechRecognized(text=text, confidence=confidence, **kw))

    def last_play(self) -> Any:
        plays = [o for o in self.log if isinstance(o, Play)]
        assert plays, "nothing was played"
        return plays[-1]

    def prompt_done(self) -> list[Any]:
        return self.send(PromptFinished(play_id=self.last_play().play_id))

    def advance(self, seconds: float) -> list[Any]:
        self.now += seconds
        return self._record(self.session.handle_timer(self.now))


def texts(outputs: list[Any]) -> list[str]:
    """Every text the caller hears in these outputs, in order."""
    from ivr.actions import Play

    return [p.text for o in outputs if isinstance(o, Play) for p in o.prompts if p.text]


def of_type(outputs: list[Any], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]
