"""IVR trees: the schema admins write call flows in, loading them from a folder, and the checks
that refuse a flow with a dangling target, an unreachable node, a loop a silent caller could never
leave, a missing prompt file, or a queue or skill that does not exist."""

from config.ivr.checks import Known
from config.ivr.load import load_ivr_trees, parse_ivr_documents
from config.ivr.nodes import (
    NODE_TYPES,
    Branch,
    CallbackNode,
    Choice,
    CollectDigitsNode,
    CollectSpeechNode,
    ConditionNode,
    Confirm,
    CrmLookupNode,
    DtmfFallback,
    GotoNode,
    HangupNode,
    IvrNode,
    LanguageChoice,
    LanguageNode,
    Link,
    MenuNode,
    PlayNode,
    QueueNode,
    SetVariableNode,
    TransferNode,
    VoicemailNode,
)
from config.ivr.schema import PLACEHOLDER, Condition, Prompt, PromptItem, TimeWindow
from config.ivr.tree import HolidayCalendar, IvrTree, IvrTrees

__all__ = [
    "NODE_TYPES",
    "PLACEHOLDER",
    "Branch",
    "CallbackNode",
    "Choice",
    "CollectDigitsNode",
    "CollectSpeechNode",
    "Condition",
    "ConditionNode",
    "Confirm",
    "CrmLookupNode",
    "DtmfFallback",
    "GotoNode",
    "HangupNode",
    "HolidayCalendar",
    "IvrNode",
    "IvrTree",
    "IvrTrees",
    "Known",
    "LanguageChoice",
    "LanguageNode",
    "Link",
    "MenuNode",
    "PlayNode",
    "Prompt",
    "PromptItem",
    "QueueNode",
    "SetVariableNode",
    "TimeWindow",
    "TransferNode",
    "VoicemailNode",
    "load_ivr_trees",
    "parse_ivr_documents",
]
