"""Evaluating the conditions of ``condition`` nodes: time windows and holidays in a time zone,
call variables, CRM fields and the caller's number."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from config.ivr.schema import Condition, TimeWindow
from config.ivr.tree import HolidayCalendar

__all__ = ["ConditionContext", "holds"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionContext:
    variables: Mapping[str, str]
    #: The wall-clock moment being judged (timezone-aware).
    moment: datetime
    #: Zone of windows and holidays that do not name their own.
    timezone: str
    holidays: Mapping[str, HolidayCalendar]


def holds(condition: Condition, context: ConditionContext) -> bool:
    subject = condition.subject
    if subject == "all":
        return all(holds(part, context) for part in condition.all_ or ())
    if subject == "any":
        return any(holds(part, context) for part in condition.any_ or ())
    if subject == "not":
        assert condition.not_ is not None
        return not holds(condition.not_, context)
    if subject == "time":
        assert condition.time is not None
        return _in_window(condition.time, context)
    if subject == "holiday":
        assert condition.holiday is not None
        local = context.moment.astimezone(ZoneInfo(context.timezone))
        return local.date() in context.holidays[condition.holiday]
    if subject == "caller_id":
        assert condition.caller_id is not None
        return re.search(condition.caller_id, context.variables.get("caller_id", "")) is not None
    name = condition.variable if subject == "variable" else f"crm.{condition.crm}"
    return _test(condition, context.variables.get(name or ""))


def _test(condition: Condition, value: str | None) -> bool:
    if condition.present is not None:
        return bool(value) == condition.present
    if value is None:
        return False
    if condition.equals is not None:
        return value == condition.equals
    if condition.one_of is not None:
        return value in condition.one_of
    assert condition.matches is not None
    return re.search(condition.matches, value) is not None


def _in_window(window: TimeWindow, context: ConditionContext) -> bool:
    local = context.moment.astimezone(ZoneInfo(window.timezone or context.timezone))
    clock = local.time().replace(tzinfo=None)
    today = local.weekday()
    if window.start < window.end:
        until_midnight = window.end == time.max
        before_end = clock <= window.end if until_midnight else clock < window.end
        return today in window.days and window.start <= clock and before_end
    # The window spans midnight: its evening belongs to a listed day, its morning to the next.
    yesterday = (local - timedelta(days=1)).weekday()
    return (today in window.days and clock >= window.start) or (
        yesterday in window.days and clock < window.end
    )
