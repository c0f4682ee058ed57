"""CRM look-up: caller id (or account number) → customer record → routing attributes.

``CrmLookupClient`` asks the CRM's HTTP endpoint (``lookup`` in ``crm.yaml``) and answers in
at most ``timeout`` seconds: a CRM that is slow, down or answering nonsense yields None, which
callers treat as "unknown customer" so no call waits on the CRM. Answers are cached (bounded,
least recently used first out) for ``cache_ttl`` seconds, "no such customer" for
``not_found_ttl``; failures are not cached. Concurrent look-ups of one key share one request.

The CRM's JSON answer is mapped by ``fields`` (attribute → dotted path, ``cases.0.id``) to a
``CustomerRecord``; ``routing_attributes`` turns that into what the ACD uses (priority, skills,
preferred agent) plus the screen-pop data that travels to the agent.

``skills`` in a record are the caller's own needs, applied at queue arrival on top of the
queue's and the IVR's: a list of skill names (minimum proficiency 1, ``"billing:3"`` for
another), a mapping skill → minimum proficiency (1 to 5), or the same as text
(``"billing:3,french"``, the form screen-pop data and IVR variables carry). A skill whose level
is not a whole number from 1 to 5 is left out rather than failing the call.

``CrmLookupClient.lookup(key, fields)`` is the IVR's ``CustomerLookup`` (``ivr.ports``), met
structurally.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import aiohttp

from config.crm import ROUTING_FIELDS, LookupSettings

logger = logging.getLogger(__name__)

#: The record's skills (see the module documentation); not text, so not in ROUTING_FIELDS.
SKILLS_FIELD = "skills"

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerRecord:
    """What the CRM knows about a caller, as routing attributes."""

    name: str | None = None
    tier: str | None = None
    vip: bool = False
    language: str | None = None
    preferred_agent: str | None = None
    open_case: str | None = None
    skills: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Skills the caller needs: skill -> minimum proficiency."""
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Other attributes named in ``fields``, as text."""

    def as_fields(self) -> dict[str, str]:
        """Every known attribute as text (``vip`` is ``true``/``false``): IVR variables and
        screen-pop data."""
        fields: dict[str, str] = {}
        for name in ROUTING_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool):
                fields[name] = "true" if value else "false"
            elif value is not None:
                fields[name] = value
        if self.skills:
            fields[SKILLS_FIELD] = skills_text(self.skills)
        fields.update(self.extra)
        return fields


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingAttributes:
    """What a customer record changes in routing, and what the agent's screen shows."""

    priority: int
    """Queue priority from the tier and VIP flag (0: no change)."""
    skills: Mapping[str, int]
    """Skills the call requires, with the minimum proficiency: the record's own, and the
    language's (proficiency 1) when configured."""
    preferred_agent: str | None
    screen_pop: Mapping[str, str]


def resolve_path(document: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``customer.cases.0.id``), or None where it stops."""
    node = document
    for step in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return None
        if node is None:
            return None
    return node


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "vip"}


def _level(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        level = int(value)
    except ValueError:
        return None
    return level if 1 <= level <= 5 else None


def parse_skills(value: Any) -> dict[str, int]:
    """A record's ``skills`` (see the module documentation) as skill -> minimum proficiency."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    pairs: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        pairs = [(str(skill), level) for skill, level in value.items()]
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                name, _, written = item.partition(":")
                pairs.append((name, written or 1))
    skills: dict[str, int] = {}
    for skill, raw in pairs:
        level = _level(raw)
        if not skill.strip() or level is None:
            logger.info("CRM skill %r with proficiency %r left out", skill, raw)
            continue
        skills[skill.strip()] = max(level, skills.get(skill.strip(), 0))
    return skills


def skills_text(skills: Mapping[str, int]) -> str:
    """``skills`` as text: ``billing:3,french`` (proficiency 1 is not written)."""
    return ",".join(name if level == 1 else f"{name}:{level}" for name, level in skills.items())


def map_answer(answer: Mapping[str, Any], fields: Mapping[str, str]) -> CustomerRecord:
    """The record in a CRM answer; attributes absent from ``fields`` use their own name."""
    paths = {name: name for name in (*ROUTING_FIELDS, SKILLS_FIELD)} | dict(fields)
    values = {name: resolve_path(answer, path) for name, path in paths.items()}
    extra = {
        name: text
        for name, value in values.items()
        if name not in ROUTING_FIELDS
        and name != SKILLS_FIELD
        and (text := _text(value)) is not None
    }
    return CustomerRecord(
        name=_text(values["name"]),
        tier=_text(values["tier"]),
        vip=_truthy(values["vip"]),
        language=_text(values["language"]),
        preferred_agent=_text(values["preferred_agent"]),
        open_case=_text(values["open_case"]),
        skills=MappingProxyType(parse_skills(values[SKILLS_FIELD])),
        extra=MappingProxyType(extra),
    )


def routing_attributes(record: CustomerRecord, settings: LookupSettings) -> RoutingAttributes:
    priority = settings.tier_priorities.get(record.tier, 0) if record.tier else 0
    if record.vip:
        priority = max(priority, settings.vip_priority)
    skills = dict(record.skills)
    skill = settings.language_skills.get(record.language) if record.language else None
    if skill:
        skills.setdefault(skill, 1)
    return RoutingAttributes(
        priority=priority,
        skills=MappingProxyType(skills),
        preferred_agent=record.preferred_agent,
        screen_pop=MappingProxyType(record.as_fields()),
    )


#: Prefix of the IVR variables a ``crm_lookup`` node sets (``crm.found``, ``crm.<field>``); a call
#: arriving in a queue carries them, and the routing attributes are rebuilt from them.
IVR_PREFIX = "crm."
FOUND_VARIABLE = "crm.found"


def record_from_variables(variables: Mapping[str, str]) -> CustomerRecord | None:
    """The customer record an IVR ``crm_lookup`` node put in ``crm.*`` variables; None when the
    look-up ran and found nobody. Raises KeyError when no look-up ran (no ``crm.found``)."""
    if variables[FOUND_VARIABLE] != "true":
        return None
    fields = {
        name[len(IVR_PREFIX) :]: value
        for name, value in variables.items()
        if name.startswith(IVR_PREFIX) and name != FOUND_VARIABLE
    }
    return map_answer(fields, {name: name for name in fields})


def screen_pop_variables(attributes: RoutingAttributes) -> dict[str, str]:
    """The ``crm.*`` variables of a record found at queue arrival: the same names the IVR's
    ``crm_lookup`` node uses, so the agent's screen and later queue steps read one vocabulary."""
    variables = {f"{IVR_PREFIX}{name}": value for name, value in attributes.screen_pop.items()}
    variables[FOUND_VARIABLE] = "true"
    return variables


class TtlCache(Generic[K, V]):
    """Bounded cache whose entries expire; ``now`` (monotonic seconds) is passed in."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> tuple[bool, V | None]:
        """``(True, value)`` for a live entry (it becomes the most recently used), else
        ``(False, None)``."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if now >= expires:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: K, value: V, ttl: float, now: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (now + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)  # least recently used


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupStats:
    requests: int
    cache_hits: int
    found: int
    not_found: int
    timeouts: int
    errors: int
    cached: int


class LookupFailedError(Exception):
    """The CRM gave no usable answer (says why); callers see it as None."""


class CrmLookupClient:
    """HTTP client of the CRM's look-up endpoint, with timeout and cache."""

    def __init__(
        self,
        settings: LookupSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._cache: TtlCache[tuple[str, str | None], CustomerRecord | None] = TtlCache(
            settings.cache_size
        )
        self._in_flight: dict[tuple[str, str | None], asyncio.Task[CustomerRecord | None]] = {}
        self._requests = self._hits = self._found = self._not_found = 0
        self._timeouts = self._errors = 0

    async def lookup(self, key: str, fields: tuple[str, ...]) -> Mapping[str, str] | None:
        """The record's ``fields`` (all when empty) for ``key``; None: unknown or no answer."""
        record = await self.find(key)
        if record is None:
            return None
        values = record.as_fields()
        if fields:
            values = {name: values[name] for name in fields if name in values}
        return MappingProxyType(values)

    async def routing(self, caller_id: str, account: str | None = None) -> RoutingAttributes | None:
        """Routing attributes for a caller arriving; None when the CRM does not know them."""
        record = await self.find(caller_id, account)
        return None if record is None else routing_attributes(record, self.settings)

    async def routing_for(
        self, caller_id: str, variables: Mapping[str, str]
    ) -> RoutingAttributes | None:
        """Routing attributes for a caller joining a queue.

        When the IVR already looked the caller up (its ``crm.*`` variables), that answer is
        used as it is: the IVR may have asked by account number, and the caller must not wait
        for the CRM twice. Otherwise the caller id is looked up (cached, at most ``timeout``).
        """
        if FOUND_VARIABLE in variables:
            record = record_from_variables(variables)
        else:
            record = await self.find(caller_id)
        return None if record is None else routing_attributes(record, self.settings)

    async def find(self, key: str, account: str | None = None) -> CustomerRecord | None:
        """The customer for ``key`` (and account number), from the cache or the CRM."""
        cache_key = (key, account)
        hit, cached = self._cache.get(cache_key, self._clock())
        if hit:
            self._hits += 1
            return cached
        task = self._in_flight.get(cache_key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, account))
            self._in_flight[cache_key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(cache_key, None))
        # One caller giving up (its own timeout) must not cancel the request others wait on.
        return await asyncio.shield(task)

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def stats(self) -> LookupStats:
        return LookupStats(
            requests=self._requests,
            cache_hits=self._hits,
            found=self._found,
            not_found=self._not_found,
            timeouts=self._timeouts,
            errors=self._errors,
            cached=len(self._cache),
        )

    async def _fetch(self, key: str, account: str | None) -> CustomerRecord | None:
        self._requests += 1
        timeout = self.settings.timeout
        try:
            async with asyncio.timeout(timeout):
                record = await self._ask(key, account)
        except TimeoutError:
            self._timeouts += 1
            logger.warning("CRM look-up: no answer within %g s; caller treated as unknown", timeout)
            return None
        except (LookupFailedError, aiohttp.ClientError, OSError) as exc:
            self._errors += 1
            logger.warning("CRM look-up failed (%s); caller treated as unknown", exc)
            return None
        if record is None:
            self._not_found += 1
            self._cache.put((key, account), None, self.settings.not_found_ttl, self._clock())
        else:
            self._found += 1
            self._cache.put((key, account), record, self.settings.cache_ttl, self._clock())
        return record

    async def _ask(self, key: str, account: str | None) -> CustomerRecord | None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self.settings.url
        params: dict[str, str] = {}
        if "{key}" in url:
            url = url.replace("{key}", urllib.parse.quote(key, safe=""))
        else:
            params[self.settings.query_parameter] = key
        if account is not None:
            params[self.settings.account_parameter] = account
        headers = {"accept": "application/json", **self.settings.headers}
        async with self._session.get(
            url, params=params, headers=headers, allow_redirects=False
        ) as response:
            if response.status in (404, 204):
                return None
            if response.status != 200:
                raise LookupFailedError(f"the CRM answered HTTP {response.status}")
            body = await response.read()
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            raise LookupFailedError("the CRM's answer is not JSON") from None
        if answer is None:
            return None
        if not isinstance(answer, dict):
            raise LookupFailedError("the CRM's answer is not a JSON object")
        return map_answer(answer, self.settings.fields)
