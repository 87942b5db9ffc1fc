"""Understanding customer text in Chinese and English: intent, entities, sentiment and a priority suggestion.

    from asr.nlu import default_analyzer
    analysis = default_analyzer().analyze("我要退货，订单号 12345", recent_contacts=1)
    analysis.intent                                   # "return_request"
    analysis.entities_of(EntityKind.order_number)     # [Entity(value="12345", ...)]
    analysis.model_dump(mode="json")                  # plain JSON for the timeline's ``intent`` event

Configuration is YAML in ``asr/nlu/data`` (see ``asr.nlu.config``); tests and deployments can pass their
own directory to ``Analyzer(config_dir)``.
"""

from .analyzer import Analyzer, default_analyzer
from .config import DEFAULT_CONFIG_DIR, NluConfig, load_config
from .models import (
    UNKNOWN_INTENT,
    Analysis,
    Entity,
    EntityKind,
    IntentCandidate,
    KeywordMatch,
    Label,
    Language,
    Priority,
    Reason,
    Sentiment,
    UnknownReason,
)

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "UNKNOWN_INTENT",
    "Analysis",
    "Analyzer",
    "Entity",
    "EntityKind",
    "IntentCandidate",
    "KeywordMatch",
    "Label",
    "Language",
    "NluConfig",
    "Priority",
    "Reason",
    "Sentiment",
    "UnknownReason",
    "default_analyzer",
    "load_config",
]
