"""The installed SIP and SDP cores are mypyc-compiled (setup.py), unless asked to stay plain."""

from __future__ import annotations

import importlib
import importlib.machinery
import os

import pytest

# The modules every SIP message of a call runs through, and the asyncio layer, which is not
# compiled.
HOT_MODULES = (
    "telephony.sip.message",
    "telephony.sip.headers",
    "telephony.sip.uri",
    "telephony.sip.transaction",
    "telephony.sip.dialog",
    "telephony.sip.core",
    "telephony.sdp.negotiation",
)


def _is_compiled(module_name: str) -> bool:
    path = importlib.import_module(module_name).__file__ or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


@pytest.mark.parametrize("module_name", HOT_MODULES)
def test_the_sip_and_sdp_core_modules_run_compiled_unless_installed_plain(module_name: str) -> None:
    assert _is_compiled(module_name) is not bool(os.environ.get("CXOS_PURE_PYTHON"))


def test_the_sip_transport_stays_interpreted() -> None:
    assert not _is_compiled("telephony.sip.transport")
