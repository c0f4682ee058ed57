"""Settings of the CRM bridge, read from ``crm.yaml`` in the configuration directory.

Three independent parts, each optional:

- ``webhooks``: endpoints that receive events as signed HTTP POSTs (Standard Webhooks), each
  subscribed to event types (``call.ended``, ``queue.*`` or ``*``), with its timeout, retry
  policy and circuit breaker;
- ``lookup``: the CRM's customer look-up (caller id or account number → customer record), its
  timeout and cache, and how the CRM's answer maps to routing attributes;
- ``redis_stream``: a Redis Stream that receives the same envelopes, for consumers inside the
  network.

Validated once at the edge like every other file: a mistake is reported as
``crm.yaml:LINE: problem``.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from config.source import ConfigError, load_yaml, validate

CRM_FILE = "crm.yaml"

#: An event type (``queue.joined``), a family (``queue.*``) or every event (``*``).
_EVENT_PATTERN = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")

#: The routing attributes a CRM answer can fill; any other name in ``fields`` is carried as is.
ROUTING_FIELDS = ("name", "tier", "vip", "language", "preferred_agent", "open_case")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_secret(text: str) -> str:
    # The Standard Webhooks secret form: "whsec_" + base64 of the HMAC key.
    if not text.startswith("whsec_"):
        raise ValueError("a webhook secret starts with 'whsec_' followed by base64")
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("the part after 'whsec_' is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook key should be 24 to 64 bytes long, this one is {len(key)}")
    return text


def _check_http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def _check_pattern(text: str) -> str:
    if not _EVENT_PATTERN.match(text):
        raise ValueError(f"{text!r} is not an event type, 'family.*' or '*'")
    return text


WebhookSecretText = Annotated[str, AfterValidator(_check_secret)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
EventPattern = Annotated[str, AfterValidator(_check_pattern)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]


class RetrySettings(_Strict):
    """Exponential backoff with jitter between attempts of one delivery."""

    #: Seconds before the second attempt (before jitter).
    initial_delay: Seconds = 5.0
    #: Each further delay is this many times the previous one.
    multiplier: float = Field(default=2.0, ge=1, le=10)
    #: Longest delay between two attempts, seconds.
    max_delay: Seconds = 3600.0
    #: Fraction of each delay that is random (0: none, 1: anywhere from 0 to the delay).
    jitter: float = Field(default=0.5, ge=0, le=1)
    #: Attempts in all, the first included; then the delivery becomes a dead letter.
    max_attempts: int = Field(default=12, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> RetrySettings:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must not be below initial_delay")
        return self


class BreakerSettings(_Strict):
    """When to stop sending to an endpoint that keeps failing, and when to try again."""

    #: Consecutive failed requests that open the breaker.
    failure_threshold: int = Field(default=5, ge=1, le=10_000)
    #: Seconds the breaker stays open before one probe request.
    cooldown: Seconds = 30.0
    #: Longest cool-down after repeated failed probes (each one doubles it), seconds.
    max_cooldown: Seconds = 600.0

    @model_validator(mode="after")
    def _ordered(self) -> BreakerSettings:
        if self.max_cooldown < self.cooldown:
            raise ValueError("max_cooldown must not be below cooldown")
        return self


class WebhookEndpoint(_Strict):
    """One receiver of signed event deliveries."""

    #: Identifies the endpoint in the outbox, the logs and ``cxos deadletters``.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    url: HttpUrl
    #: ``whsec_…`` shared with the receiver; deliveries are signed with it.
    secret: WebhookSecretText = Field(repr=False)
    #: Secrets the receiver may still use during a rotation; each delivery is signed with all.
    previous_secrets: tuple[WebhookSecretText, ...] = Field(default=(), repr=False)
    #: Event types delivered: exact (``call.ended``), a family (``queue.*``) or ``*``.
    events: tuple[EventPattern, ...] = Field(min_length=1)
    #: Seconds one request may take, connection included, before it counts as failed.
    timeout: Seconds = 10.0
    #: Requests in flight at once to this endpoint (each for a different call).
    max_in_flight: int = Field(default=32, ge=1, le=1024)
    retry: RetrySettings = RetrySettings()
    circuit_breaker: BreakerSettings = BreakerSettings()


class LookupSettings(_Strict):
    """The CRM's customer look-up."""

    #: ``https://crm.example/api/customers/{key}``, or without ``{key}`` the key goes in the
    #: query parameter ``query_parameter``.
    url: HttpUrl
    query_parameter: str = Field(default="phone", min_length=1)
    #: Query parameter of an account number collected in the IVR, when there is one.
    account_parameter: str = Field(default="account", min_length=1)
    #: Extra request headers, e.g. ``Authorization: Bearer …`` (never logged).
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    #: Seconds to wait for the CRM; after that the caller is treated as unknown.
    timeout: Seconds = 2.0
    #: Seconds a record found is reused without asking again.
    cache_ttl: float = Field(default=300.0, ge=0, le=86_400)
    #: Seconds an answer "no such customer" is reused.
    not_found_ttl: float = Field(default=60.0, ge=0, le=86_400)
    #: Most records kept in the cache (least recently used go first).
    cache_size: int = Field(default=10_000, ge=1, le=10_000_000)
    #: Attribute → dotted path in the CRM's JSON answer (``customer.tier``, ``cases.0.id``).
    #: Attributes not listed are read from a top-level key of the same name.
    fields: dict[str, str] = Field(default_factory=dict)
    #: Queue priority given to callers of each tier (``gold: 5``).
    tier_priorities: dict[str, int] = Field(default_factory=dict)
    #: Queue priority of a VIP caller (the higher of this and the tier's applies).
    vip_priority: int = Field(default=0, ge=0, le=1000)
    #: Skill required for callers speaking a language (``fr: french``).
    language_skills: dict[str, str] = Field(default_factory=dict)


class RedisStreamSettings(_Strict):
    """Publishing every envelope to a Redis Stream."""

    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^rediss?://")
    stream: str = Field(default="cxos:events", min_length=1)
    #: Approximate length the stream is trimmed to (``XADD MAXLEN ~``).
    maxlen: int = Field(default=100_000, ge=100)
    #: Event types published; every type when empty.
    events: tuple[EventPattern, ...] = ()
    #: Envelopes waiting for Redis; beyond that the oldest are dropped (and counted).
    queue_size: int = Field(default=10_000, ge=1)


class DeliverySettings(_Strict):
    """How the delivery workers read the outbox."""

    #: Seconds between looks at the outbox when there is nothing to deliver.
    poll_interval: Seconds = 0.2
    #: Seconds a worker holds a delivery it is sending; past it another node may take over.
    lease: Seconds = 120.0


class CrmSettings(_Strict):
    webhooks: tuple[WebhookEndpoint, ...] = ()
    lookup: LookupSettings | None = None
    redis_stream: RedisStreamSettings | None = None
    delivery: DeliverySettings = DeliverySettings()

    @model_validator(mode="after")
    def _unique_names(self) -> CrmSettings:
        seen: set[str] = set()
        for endpoint in self.webhooks:
            if endpoint.name in seen:
                raise ValueError(f"two webhook endpoints are named {endpoint.name!r}")
            seen.add(endpoint.name)
        return self


def load_crm_settings(directory: Path) -> CrmSettings:
    """``crm.yaml`` of a configuration directory; no CRM bridge (the defaults) without one.

    Raises ``ConfigError`` with ``crm.yaml:LINE: problem`` entries.
    """
    path = directory / CRM_FILE
    if not path.exists():
        return CrmSettings()
    document = load_yaml(path)
    # Duplicate names are found on the raw data first, so the problem names the line of the
    # second one rather than the top of the file.
    problems = []
    data = document.data
    webhooks = data.get("webhooks") if isinstance(data, dict) else None
    if isinstance(webhooks, list):
        seen: set[str] = set()
        for index, entry in enumerate(webhooks):
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str):
                if name in seen:
                    problems.append(
                        document.problem(
                            ("webhooks", index, "name"),
                            f"webhooks.{index}.name: another endpoint is already named {name!r}",
                        )
                    )
                seen.add(name)
    if problems:
        raise ConfigError(problems)
    return validate(CrmSettings, document)
