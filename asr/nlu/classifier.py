"""Intent classification: a linear model trained on the YAML examples, combined with keyword rules.

Why this model: a few hundred short examples per language, texts that arrive from ASR with homophones and
odd segmentation, and a hard requirement to say ``unknown`` instead of guessing. So the features are three
sparse TF-IDF channels that fail independently — jieba words (+ bigrams), character n-grams (1–3 of
Chinese, robust to segmentation errors; 3–5 inside English words, robust to misspellings) and toneless
pinyin syllables of the Chinese characters (+ bigrams: 退火 and 退货 are both "tui huo") — and the
classifier is a multinomial logistic regression.
It gives probabilities directly, without the cross-validation a calibrated SVM would need on this little
data; it trains in well under a second at start-up (no pickled model to go stale against its YAML); and
it predicts in microseconds. Out-of-scope examples are trained as their own class, ``unknown``.

Keyword rules then add ``keyword_weight`` to every intent whose keywords occur in the text (literally, or
by pinyin for Chinese keywords of two or more characters) and the scores are renormalised: a keyword can
lift a hesitant model, two competing keywords split the lift, and the model still decides between them.
Below ``unknown_threshold``, or when the out-of-scope class wins, the answer is ``unknown``.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from pypinyin import Style, lazy_pinyin
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from .config import NluConfig
from .models import KeywordMatch
from .segmenter import Segmenter
from .text import HAN, word_count

_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_HAN_RUN = re.compile(f"[{HAN}]+")
_CHARACTER_RUN = re.compile(f"[{HAN}]+|[a-z0-9']+")
# Regularisation of the logistic regression and the weight of each feature channel, chosen by 5-fold
# cross-validation on the training examples only (never on eval.yaml): characters carry most of the signal
# and survive ASR errors best, jieba words add precision, pinyin adds recall on homophones.
_C = 8.0
_CHANNEL_WEIGHTS = {"words": 0.5, "chars": 1.5, "pinyin": 1.0}


def _mask_digits(text: str) -> str:
    """Order numbers and amounts say nothing about the intent; their presence does."""
    return _DIGITS.sub("0", text.lower())


def _bigrams(tokens: list[str]) -> list[str]:
    return [*tokens, *(f"{left} {right}" for left, right in itertools.pairwise(tokens))]


def _characters(text: str) -> list[str]:
    """Character n-grams: 1–3 within each run of Chinese characters, 3–5 within each English word (with
    its word boundaries). Shorter English n-grams ("ca", "ur") tie unrelated words together."""
    grams: list[str] = []
    for run in _CHARACTER_RUN.finditer(_mask_digits(text)):
        if _HAN_RUN.match(run.group()):
            word, sizes = run.group(), range(1, 4)
        else:
            word, sizes = f" {run.group()} ", range(3, 6)
        grams += [word[i : i + n] for n in sizes for i in range(len(word) - n + 1)]
    return grams


@dataclass(frozen=True, slots=True)
class _Syllables:
    """Toneless pinyin of every Chinese character, runs separated by ``|``, and where each syllable is."""

    joined: str  # " tui huo | ding dan " — spaces around each syllable so str.find matches whole ones
    offsets: list[int]  # offset in ``joined`` where each syllable starts
    positions: list[int]  # index in the text of the character that syllable reads


def _syllables(text: str) -> _Syllables:
    parts: list[str] = [" "]
    offsets: list[int] = []
    positions: list[int] = []
    length = 1
    for run in _HAN_RUN.finditer(text):
        for index, syllable in enumerate(lazy_pinyin(run.group(), style=Style.NORMAL, errors="ignore")):
            offsets.append(length)
            positions.append(run.start() + index)
            parts.append(f"{syllable} ")
            length += len(syllable) + 1
        parts.append("| ")
        length += 2
    return _Syllables("".join(parts), offsets, positions)


class KeywordRules:
    """Finds every intent's keywords in a text: literally, or by sound for Chinese keywords."""

    def __init__(self, keywords: dict[str, tuple[str, ...]], max_words: dict[str, int] | None = None) -> None:
        self._max_words = max_words or {}
        self._literal: list[tuple[str, str, re.Pattern[str] | None]] = []
        self._by_sound: list[tuple[str, str, str]] = []
        for intent, words in keywords.items():
            for word in words:
                lowered = word.lower()
                latin = re.search(f"[{HAN}]", lowered) is None
                # Latin keywords match whole words with an optional inflection (refund, refunded) unless
                # they are tiny ("hi" must not fire on "his"); Chinese keywords match anywhere.
                inflection = "(?:s|es|ed|ing)?" if len(lowered) >= 3 else ""
                pattern = (
                    re.compile(rf"(?<![a-z]){re.escape(lowered)}{inflection}(?![a-z])") if latin else None
                )
                self._literal.append((intent, word, pattern))
                if not latin and _HAN_RUN.fullmatch(word) and len(word) >= 2:
                    syllables = lazy_pinyin(word, style=Style.NORMAL, errors="ignore")
                    self._by_sound.append((intent, word, f" {' '.join(syllables)} "))

    def match(self, text: str) -> list[KeywordMatch]:
        lowered = text.lower()
        found: dict[tuple[str, str], KeywordMatch] = {}
        for intent, word, pattern in self._literal:
            hit = pattern.search(lowered) is not None if pattern else word.lower() in lowered
            if hit:
                found[intent, word] = KeywordMatch(keyword=word, intent=intent, via="text", heard=word)
        if self._by_sound and _HAN_RUN.search(text):
            syllables = _syllables(text)
            for intent, word, sound in self._by_sound:
                if (intent, word) in found:
                    continue
                at = syllables.joined.find(sound)
                if at < 0:
                    continue
                first = bisect.bisect_left(syllables.offsets, at + 1)
                start = syllables.positions[first]
                heard = text[start : start + len(word)]
                found[intent, word] = KeywordMatch(keyword=word, intent=intent, via="pinyin", heard=heard)
        words = word_count(text)
        return [match for match in found.values() if words <= self._max_words.get(match.intent, words)]


@dataclass(frozen=True, slots=True)
class _Channel:
    """One fitted feature channel: its analyzer, its vocabulary (token → column of the joint matrix)."""

    analyse: Callable[[str], list[str]]
    vocabulary: dict[str, int]
    weight: float


@dataclass(frozen=True, slots=True)
class Classification:
    """Scores over every class (intents and ``unknown``), best first, after the keyword rules."""

    ranked: list[tuple[str, float]]
    keywords: list[KeywordMatch]


class IntentClassifier:
    """Trains on construction; ``classify`` is then read-only and safe from any thread."""

    def __init__(self, config: NluConfig, segmenter: Segmenter) -> None:
        self._segmenter = segmenter
        self._keyword_weight = config.settings.keyword_weight
        self._rules = KeywordRules(
            {name: intent.keywords for name, intent in config.intents.items()},
            config.settings.keyword_max_words,
        )
        texts, labels = zip(*config.training_examples(), strict=True)
        vectorizers = {
            "words": TfidfVectorizer(analyzer=self._words, sublinear_tf=True),
            "chars": TfidfVectorizer(analyzer=_characters, sublinear_tf=True),
            "pinyin": TfidfVectorizer(analyzer=self._pinyin, sublinear_tf=True),
        }
        features = sparse.hstack(
            [
                _CHANNEL_WEIGHTS[name] * vectorizer.fit_transform(texts)
                for name, vectorizer in vectorizers.items()
            ],
            format="csr",
        )
        model = LogisticRegression(C=_C, max_iter=2000)
        # One BLAS thread: on a busy 2-core machine a threaded solver runs ten times slower, not faster.
        with threadpool_limits(limits=1):
            model.fit(features, list(labels))
        self._classes: list[str] = [str(name) for name in model.classes_]
        # Prediction does by hand what TfidfVectorizer.transform and predict_proba do (counts → 1 + log tf →
        # × idf → L2 norm → × channel weight → linear → softmax): for one short text sklearn's per-call input
        # checks cost several times the arithmetic. tests/nlu pins the two paths to the same numbers.
        self._channels: list[_Channel] = []
        offset = 0
        for name, vectorizer in vectorizers.items():
            vocabulary = {
                str(token): int(column) + offset for token, column in vectorizer.vocabulary_.items()
            }
            self._channels.append(_Channel(vectorizer.build_analyzer(), vocabulary, _CHANNEL_WEIGHTS[name]))
            offset += len(vectorizer.vocabulary_)
        self._idf = np.concatenate([vectorizer.idf_ for vectorizer in vectorizers.values()])
        self._coefficients: np.ndarray[Any, np.dtype[np.float64]] = np.ascontiguousarray(model.coef_.T)
        self._intercepts: np.ndarray[Any, np.dtype[np.float64]] = model.intercept_
        self._reference = (vectorizers, model)

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    def _words(self, text: str) -> list[str]:
        return _bigrams(self._segmenter.cut(_mask_digits(text)))

    @staticmethod
    def _pinyin(text: str) -> list[str]:
        syllables = [
            syllable
            for run in _HAN_RUN.findall(text)
            for syllable in lazy_pinyin(run, style=Style.NORMAL, errors="ignore")
        ]
        return _bigrams(syllables)

    def model_probabilities(self, text: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The model alone, without keyword rules: the probability of every class (``classes`` order)."""
        columns: list[int] = []
        values: list[float] = []
        for channel in self._channels:
            counts = Counter(token for token in channel.analyse(text) if token in channel.vocabulary)
            if not counts:
                continue
            channel_columns = [channel.vocabulary[token] for token in counts]
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self._idf[
                channel_columns
            ]
            columns += channel_columns
            values += list(channel.weight * weights / np.linalg.norm(weights))
        logits = self._intercepts + (np.asarray(values) @ self._coefficients[columns] if columns else 0.0)
        exponentials = np.exp(logits - logits.max())
        return cast(np.ndarray[Any, np.dtype[np.float64]], exponentials / exponentials.sum())

    def reference_probabilities(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The same probabilities through scikit-learn's own transform and predict_proba (slower; for
        tests that pin ``model_probabilities`` to it)."""
        vectorizers, model = self._reference
        features = sparse.hstack(
            [
                _CHANNEL_WEIGHTS[name] * vectorizer.transform(texts)
                for name, vectorizer in vectorizers.items()
            ],
            format="csr",
        )
        return cast(np.ndarray[Any, np.dtype[np.float64]], model.predict_proba(features))

    def classify(self, text: str) -> Classification:
        probabilities = self.model_probabilities(text)
        keywords = self._rules.match(text)
        boosted = {match.intent for match in keywords}
        scores = {
            name: float(probability) + (self._keyword_weight if name in boosted else 0.0)
            for name, probability in zip(self._classes, probabilities, strict=True)
        }
        total = sum(scores.values())
        ranked = sorted(((name, score / total) for name, score in scores.items()), key=lambda item: -item[1])
        return Classification(ranked=ranked, keywords=keywords)
