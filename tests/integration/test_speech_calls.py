"""A caller says what they want: SIPp plays generated speech into a call on 127.0.0.1 and the
shipped IVR tree branches on it.

The telephony service runs in the test's event loop with an IVR runner on every answered call,
listening through the speech layer (the built-in English engine, pocketsphinx in a worker
process); prompts written as text are spoken by espeak-ng. The caller's audio is "billing" said
by espeak-ng, band-limited to the telephone band at 8 kHz, sent as PCMU RTP from a pcap file
(tests/integration/rtp_pcap.py); then, on the same RTP stream, RFC 4733 keys for the account
number the billing branch asks for.
Business hours are judged at a Tuesday morning in New York, whatever the time of the test.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config.loader import Configuration, default_config_dir, load_configuration
from ivr.actions import EnqueueCall
from ivr.events import IvrExited, IvrInput
from ivr.prompts import SpokenPrompts
from ivr.runner import IvrOutcome, IvrRunner, RunnerSettings
from speech.events import SpeechTranscript
from speech.listener import SpeechInput
from speech.pool import ProcessEngine
from speech.service import SpeechService
from speech.sphinx_engine import sphinx_engine_factory
from speech.tts import PromptRenderer as TextToSpeech
from telephony.events import CallStarted
from telephony.media.calls import MediaCall
from telephony.rtp.g711 import Law
from telephony.service import TelephonyService
from tests.integration.peers import SCENARIOS, SippResult, free_port, run_sipp, write_server_config
from tests.integration.rtp_pcap import RtpStream, write_pcap
from tests.ivr.ivr_helpers import TUESDAY_MORNING
from tests.speech.speech_audio import SpeechAudio

pytestmark = [pytest.mark.peer, pytest.mark.timeout(90)]

# The espeak-ng voice the bundled English model hears best.
VOICE = "en-us+klatt"


@dataclass
class Node:
    """The telephony service with an IVR that listens on every answered call."""

    service: TelephonyService
    configuration: Configuration
    speech: SpeechInput
    speech_service: SpeechService
    prompts: SpokenPrompts
    voicemail_dir: Path
    address: str
    events: list[object] = field(default_factory=list)
    outcomes: dict[str, IvrOutcome] = field(default_factory=dict)

    async def run_ivr(self, call: MediaCall) -> None:
        started = next(
            e for e in self.events if isinstance(e, CallStarted) and e.call_id == call.call_id
        )
        entry = self.configuration.dialplan.entry_for(started.did)
        assert entry is not None and entry.ivr is not None
        runner = IvrRunner(
            self.configuration.ivr[entry.ivr],
            call,
            renderer=self.prompts,
            publish=self.events.append,
            speech=self.speech,
            settings=RunnerSettings(voicemail_dir=self.voicemail_dir),
            wall_clock=lambda: TUESDAY_MORNING,
        )
        outcome = await runner.run(caller_id=started.caller_id, dialed_number=started.did)
        self.outcomes[call.call_id] = outcome
        call.hangup()  # no ACD here: the call ends where the IVR sent it


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config_dir = tmp_path / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    port = free_port()
    # write_server_config gives the node a private RTP range below the ephemeral ports.
    write_server_config(config_dir, port)
    configuration = load_configuration(config_dir)
    events: list[object] = []
    engine = await asyncio.to_thread(
        ProcessEngine, sphinx_engine_factory(), name="pocketsphinx", processes=1
    )
    speech_service = SpeechService(engine, workers=2, max_streams=4)
    service = TelephonyService(configuration, publish=events.append)
    node = Node(
        service=service,
        configuration=configuration,
        speech=SpeechInput(speech_service, publish=events.append),
        speech_service=speech_service,
        prompts=SpokenPrompts(TextToSpeech(tmp_path / "tts")),
        voicemail_dir=tmp_path / "voicemail",
        address=f"127.0.0.1:{port}",
        events=events,
    )
    service.call_handler = node.run_ivr
    await service.start()
    yield node
    await service.stop(1.0)
    await speech_service.aclose()


def prepare_caller(workdir: Path, words: str, keys: str) -> None:
    """``pcap/speech.pcap``: a moment of line silence, then ``words`` spoken; ``pcap/keys.pcap``:
    ``keys`` one by one, the last after a longer pause (it answers a question asked after the
    others). One RTP stream across both files."""
    folder = workdir / "pcap"
    folder.mkdir(parents=True, exist_ok=True)
    (workdir / "audio").mkdir(parents=True, exist_ok=True)
    clip = SpeechAudio(workdir / "audio").speech(words, voice=VOICE, lead=0.3, trail=1.0)
    stream = RtpStream(Law.ULAW)
    write_pcap(folder / "speech.pcap", [*stream.silence(0.6), *stream.audio(clip.samples())])
    stream.pause(1.5)  # the scenario waits before it keys
    keyed = []
    for index, key in enumerate(keys):
        if index:
            stream.pause(1.5 if index == len(keys) - 1 else 0.24)
        keyed += stream.key(key)
    write_pcap(folder / "keys.pcap", keyed)


async def sipp(node: Node, scenario: str, workdir: Path, words: str, keys: str) -> SippResult:
    await asyncio.to_thread(prepare_caller, workdir, words, keys)
    args = ["-sf", str(SCENARIOS / scenario), "-m", "1", "-s", "100"]
    result = await asyncio.to_thread(run_sipp, node.address, args, workdir)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.file('_errors.log')[-2000:]}"
    return result


async def test_saying_billing_in_the_main_menu_reaches_the_billing_queue(
    node: Node, tmp_path: Path
) -> None:
    await sipp(node, "uac_ivr_say_billing.xml", tmp_path / "sipp", "billing", "123456#1")

    [exited] = [e for e in node.events if isinstance(e, IvrExited)]
    assert (exited.destination, exited.target) == ("queue", "billing")
    assert exited.variables["department"] == "billing"
    outcome = node.outcomes[exited.call_id]
    assert isinstance(outcome.handoff, EnqueueCall) and outcome.handoff.queue == "billing"
    inputs = [e for e in node.events if isinstance(e, IvrInput)]
    spoken = inputs[0]
    assert (spoken.node_id, spoken.kind, spoken.speech, spoken.outcome) == (
        "main_menu",
        "speech",
        "billing",
        "accepted",
    )
    assert spoken.confidence is not None and spoken.confidence >= 0.5
    # Keys still work on the same call once the caller has spoken.
    assert [(e.node_id, e.digits, e.outcome) for e in inputs[1:]] == [
        ("account_number", "123456", "accepted"),
        ("account_number", "1", "accepted"),
    ]
    transcripts = [e for e in node.events if isinstance(e, SpeechTranscript)]
    assert [(t.call_id, t.text) for t in transcripts] == [(exited.call_id, "billing")]
    assert node.speech_service.active_calls == 0  # the recogniser went with the call
