"""The one entry point: ``Analyzer.analyze(text) -> Analysis`` for text from any channel (ASR transcripts,
chat, SMS, email bodies).

An ``Analyzer`` loads its config directory, builds the shared jieba segmenter and trains (or, with a
model cache, loads) the intent model in its constructor (about two seconds on a cold process, most of it
jieba), then ``analyze`` is read-only and safe to call from any thread. Build one per process and share
it — ``default_analyzer()`` does exactly that for the packaged configuration, with the model cache.
``analyze`` is CPU-bound (about a millisecond for a chat message): call it from a worker thread, not on the
event loop, when texts can be long.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo
from pathlib import Path
from typing import get_args

from core.errors import Invalid

from .cache import default_cache_dir
from .classifier import IntentClassifier
from .config import DEFAULT_CONFIG_DIR, NluConfig, load_config
from .entities import EntityExtractor
from .models import (
    UNKNOWN_INTENT,
    Analysis,
    IntentCandidate,
    KeywordMatch,
    Label,
    Language,
    Priority,
    UnknownReason,
)
from .priority import PriorityRules
from .segmenter import shared_segmenter
from .text import detect_language, has_words, normalise
from .training import cached_model

UNKNOWN_LABEL = Label(zh="未识别", en="Unknown")
TOP_ALTERNATIVES = 3


class Analyzer:
    """Intent, entities, sentiment and a priority suggestion for one text.

    ``config_dir`` holds the YAML files described in ``asr.nlu.config``; the keyword arguments override
    ``nlu.yaml``: ``unknown_threshold`` (below it the answer is ``unknown``), ``max_chars`` (longer input
    is cut there and flagged ``truncated``) and ``timezone`` (where "today" is, for relative dates).
    With ``model_cache``, the intent model is read from that directory, trained there by a child process
    the first time (``asr.nlu.training``): this process then never imports scikit-learn. Without it, the
    model is trained here.
    """

    def __init__(
        self,
        config_dir: Path = DEFAULT_CONFIG_DIR,
        *,
        unknown_threshold: float | None = None,
        max_chars: int | None = None,
        timezone: str | None = None,
        model_cache: Path | None = None,
    ) -> None:
        started = time.perf_counter()
        config = load_config(config_dir)
        overrides = {
            key: value
            for key, value in (
                ("unknown_threshold", unknown_threshold),
                ("max_chars", max_chars),
                ("timezone", timezone),
            )
            if value is not None
        }
        if overrides:
            try:
                settings = config.settings.model_validate({**config.settings.model_dump(), **overrides})
            except ValueError as exc:
                raise Invalid(f"NLU settings: {exc}", code="nlu_config_invalid") from exc
            config = config.model_copy(update={"settings": settings})
        self.config: NluConfig = config
        self._segmenter = shared_segmenter(config.lexicon.dictionary_words())
        self._segmenter.load()
        model = cached_model(config, config_dir, model_cache) if model_cache is not None else None
        self._classifier = IntentClassifier(config, self._segmenter, model)
        self._entities = EntityExtractor(config.lexicon.products)
        self._priority = PriorityRules(config.sentiment)
        self._product_words = frozenset(
            word.lower()
            for product in config.lexicon.products
            for name in (product.name, *product.aliases)
            for word in name.split()
            if word.isascii()
        )
        self._timezone = zoneinfo.ZoneInfo(config.settings.timezone)
        self.load_seconds = time.perf_counter() - started

    @property
    def intents(self) -> list[str]:
        """The intent names this analyzer can answer, besides ``unknown``."""
        return list(self.config.intents)

    def label(self, intent: str) -> Label:
        return self.config.intents[intent].label if intent in self.config.intents else UNKNOWN_LABEL

    def analyze(
        self,
        text: str,
        *,
        language: Language | None = None,
        now: dt.datetime | None = None,
        recent_contacts: int = 0,
        timezone: str | None = None,
    ) -> Analysis:
        """Analyse one text. Never raises for what the text contains (empty, huge, emoji, punctuation):
        those give ``intent="unknown"`` with an ``unknown_reason``. Raises ``core.errors.Invalid`` only for
        bad arguments.

        ``language`` overrides detection when the channel knows it; ``now`` anchors relative dates (naive
        means local time in ``timezone``, default the configured one); ``recent_contacts`` is how many times
        the customer got in touch recently before this message (repeated contact raises the priority).
        """
        if not isinstance(text, str):
            raise Invalid(f"text must be a string, not {type(text).__name__}", code="nlu_invalid_text")
        if language is not None and language not in get_args(Language):
            raise Invalid(
                f"language must be one of {get_args(Language)}, not {language!r}", code="nlu_invalid_language"
            )
        if recent_contacts < 0:
            raise Invalid("recent_contacts must not be negative", code="nlu_invalid_recent_contacts")
        today = self._today(now, timezone)
        settings = self.config.settings
        normalised = normalise(text, settings.max_chars)
        body = normalised.text
        detected = language or detect_language(body, self._product_words)

        unknown_reason: UnknownReason | None = None
        alternatives: list[IntentCandidate] = []
        keywords: list[KeywordMatch] = []
        intent, confidence = UNKNOWN_INTENT, 0.0
        if not body:
            unknown_reason = UnknownReason.empty
        elif not has_words(body):
            unknown_reason = UnknownReason.no_words
        else:
            classification = self._classifier.classify(body)
            keywords = classification.keywords
            best, best_score = classification.ranked[0]
            alternatives = [
                IntentCandidate(intent=name, label=self.label(name), confidence=round(score, 4))
                for name, score in classification.ranked
                if name != UNKNOWN_INTENT
            ][:TOP_ALTERNATIVES]
            if best == UNKNOWN_INTENT:
                unknown_reason = UnknownReason.out_of_scope
            elif best_score < settings.unknown_threshold:
                unknown_reason = UnknownReason.low_confidence
            else:
                intent, confidence = best, best_score

        label = self.label(intent)
        base = self.config.intents[intent].priority if intent in self.config.intents else Priority.normal
        assessment = self._priority.assess(
            body, base=base, base_label=(label.zh, label.en), recent_contacts=recent_contacts
        )
        return Analysis(
            text=body,
            intent=intent,
            label=label,
            confidence=round(confidence, 4),
            alternatives=alternatives,
            unknown_reason=unknown_reason,
            language=detected,
            matched_keywords=keywords,
            entities=self._entities.extract(body, today) if body else [],
            sentiment=assessment.sentiment,
            priority=assessment.priority,
            reasons=assessment.reasons,
            truncated=normalised.truncated,
            original_length=normalised.original_length,
        )

    def _today(self, now: dt.datetime | None, timezone: str | None) -> dt.date:
        try:
            zone = zoneinfo.ZoneInfo(timezone) if timezone else self._timezone
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise Invalid(f"unknown time zone {timezone!r}", code="nlu_invalid_timezone") from exc
        if now is None:
            return dt.datetime.now(zone).date()
        if now.tzinfo is None:
            return now.date()
        return now.astimezone(zone).date()


_default: Analyzer | None = None
_default_lock = threading.Lock()


def default_analyzer() -> Analyzer:
    """The process-wide analyzer for the packaged configuration, built on first call (thread-safe), its
    model cached in ``asr.nlu.cache.default_cache_dir()``."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Analyzer(model_cache=default_cache_dir())
        return _default
