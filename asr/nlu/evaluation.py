"""The labelled evaluation set (``data/eval.yaml``) and the figures computed on it, shared by
``bench/intent.py`` and the accuracy regression test."""

from __future__ import annotations

import difflib
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import Invalid

from .analyzer import Analyzer
from .config import DEFAULT_CONFIG_DIR, NluConfig
from .models import UNKNOWN_INTENT

EVAL_GROUPS = {"zh": ("zh", False), "zh_asr": ("zh", True), "en": ("en", False), "en_asr": ("en", True)}
_NOT_A_WORD = re.compile(r"[\W_]+")
NEAR_DUPLICATE = 0.8  # difflib ratio from which an evaluation utterance nearly copies a training example


@dataclass(frozen=True, slots=True)
class LabelledUtterance:
    text: str
    intent: str
    language: str
    asr_style: bool


def comparable(text: str) -> str:
    """The text stripped of case, width, spaces and punctuation, to find copies that differ only there."""
    return _NOT_A_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


def training_overlap(config: NluConfig, utterances: list[LabelledUtterance]) -> list[str]:
    """Evaluation utterances that are also training examples, up to case, spaces and punctuation."""
    training = {comparable(text) for text, _ in config.training_examples()}
    return [item.text for item in utterances if comparable(item.text) in training]


def near_training(
    config: NluConfig, utterances: list[LabelledUtterance], threshold: float = NEAR_DUPLICATE
) -> list[tuple[str, str, float]]:
    """Evaluation utterances that nearly copy a training example: ``(utterance, example, similarity)`` for
    each whose difflib ratio on the ``comparable`` texts reaches ``threshold``. Such an item measures
    memory, not generalisation, however its ASR errors are spelled."""
    training = [(comparable(text), text) for text, _ in config.training_examples()]
    matcher = difflib.SequenceMatcher(autojunk=False)
    near = []
    for item in utterances:
        matcher.set_seq2(comparable(item.text))  # the side difflib indexes: once per utterance
        best = (0.0, "")
        for example, text in training:
            matcher.set_seq1(example)
            # The cheap upper bounds rule out nearly every pair before the real ratio is computed.
            if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold:
                best = max(best, (matcher.ratio(), text))
        if best[0] >= threshold:
            near.append((item.text, best[1], round(best[0], 3)))
    return near


def load_eval_set(path: Path = DEFAULT_CONFIG_DIR / "eval.yaml") -> list[LabelledUtterance]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict) or set(data) - set(EVAL_GROUPS):
        raise Invalid(
            f"{path.name}: top-level keys must be among {sorted(EVAL_GROUPS)}", code="nlu_eval_invalid"
        )
    utterances = []
    for group, intents in data.items():
        language, asr_style = EVAL_GROUPS[group]
        for intent, texts in intents.items():
            utterances += [LabelledUtterance(str(text), intent, language, asr_style) for text in texts]
    return utterances


@dataclass(frozen=True, slots=True)
class IntentScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvalReport:
    utterances: list[LabelledUtterance]
    predicted: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def accuracy(self, *, language: str | None = None, asr_style: bool | None = None) -> float:
        pairs = [
            (item.intent, guess)
            for item, guess in zip(self.utterances, self.predicted, strict=True)
            if (language is None or item.language == language)
            and (asr_style is None or item.asr_style == asr_style)
        ]
        return sum(truth == guess for truth, guess in pairs) / len(pairs) if pairs else 0.0

    def count(self, *, language: str | None = None, asr_style: bool | None = None) -> int:
        return sum(
            1
            for item in self.utterances
            if (language is None or item.language == language)
            and (asr_style is None or item.asr_style == asr_style)
        )

    def labels(self) -> list[str]:
        seen = dict.fromkeys(item.intent for item in self.utterances if item.intent != UNKNOWN_INTENT)
        return [*seen, UNKNOWN_INTENT]

    def per_intent(self) -> dict[str, IntentScores]:
        truth = [item.intent for item in self.utterances]
        scores = {}
        for label in self.labels():
            true_positive = sum(t == label and p == label for t, p in zip(truth, self.predicted, strict=True))
            predicted = sum(p == label for p in self.predicted)
            support = sum(t == label for t in truth)
            precision = true_positive / predicted if predicted else 0.0
            recall = true_positive / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            scores[label] = IntentScores(precision, recall, f1, support)
        return scores

    def confusion(self) -> Counter[tuple[str, str]]:
        """``(true, predicted)`` → count."""
        return Counter(
            (item.intent, guess) for item, guess in zip(self.utterances, self.predicted, strict=True)
        )

    def unknown_rate(self) -> float:
        """Share of all utterances answered ``unknown``."""
        return sum(guess == UNKNOWN_INTENT for guess in self.predicted) / len(self.predicted)

    def false_unknown_rate(self) -> float:
        """Share of in-scope utterances answered ``unknown`` (a missed intent, but not a wrong guess)."""
        in_scope = [
            g
            for item, g in zip(self.utterances, self.predicted, strict=True)
            if item.intent != UNKNOWN_INTENT
        ]
        return sum(guess == UNKNOWN_INTENT for guess in in_scope) / len(in_scope)

    def false_accept_rate(self) -> float:
        """Share of out-of-scope utterances given an intent (a guess where there should be none)."""
        out = [
            g
            for item, g in zip(self.utterances, self.predicted, strict=True)
            if item.intent == UNKNOWN_INTENT
        ]
        return sum(guess != UNKNOWN_INTENT for guess in out) / len(out) if out else 0.0

    def errors(self) -> list[tuple[LabelledUtterance, str]]:
        return [
            (item, guess)
            for item, guess in zip(self.utterances, self.predicted, strict=True)
            if item.intent != guess
        ]


def evaluate(analyzer: Analyzer, utterances: list[LabelledUtterance]) -> EvalReport:
    """Analyse every utterance once, timing each call."""
    report = EvalReport(utterances)
    for item in utterances:
        started = time.perf_counter()
        analysis = analyzer.analyze(item.text)
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        report.predicted.append(analysis.intent)
    return report
