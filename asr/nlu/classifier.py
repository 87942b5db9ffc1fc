"""Intent classification: a linear model trained on the YAML examples, combined with keyword rules.

Why this model: a few hundred short examples per language, texts that arrive from ASR with homophones and
odd segmentation, and a hard requirement to say ``unknown`` instead of guessing. So the features are three
sparse TF-IDF channels that fail independently — jieba words (+ bigrams), character n-grams (1–3 of
Chinese, robust to segmentation errors; 3–5 inside English words, robust to misspellings) and toneless
pinyin syllables of the Chinese characters (+ bigrams: 退火 and 退货 are both "tui huo") — and the
classifier is a multinomial logistic regression.
It gives probabilities directly, without the cross-validation a calibrated SVM would need on this little
data; it trains in well under a second; and it predicts in microseconds. Out-of-scope examples are trained
as their own class, ``unknown``. A model is never shipped to go stale against its YAML: it is trained from
the configuration, in the process or (``asr.nlu.training``) in a child process whose result is kept under
its ``model_fingerprint``, so that long-running processes predict without importing scikit-learn.

Keyword rules then add ``keyword_weight`` to every intent whose keywords occur in the text (literally, or
by pinyin for Chinese keywords of two or more characters) and the scores are renormalised: a keyword can
lift a hesitant model, two competing keywords split the lift, and the model still decides between them.
Below ``unknown_threshold``, or when the out-of-scope class wins, the answer is ``unknown``.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib.metadata
import io
import itertools
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from core.files import write_whole

from . import dictionary as dictionary_module
from . import pinyin
from . import segmenter as segmenter_module
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
MODEL_FORMAT = 1  # of a saved IntentModel
_TRAINING_PACKAGES = ("scikit-learn", "scipy", "numpy", "jieba", "marisa-trie", "pypinyin")


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
        for index, syllable in enumerate(pinyin.syllables(run.group())):
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
                    syllables = pinyin.syllables(word)
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


def _pinyin(text: str) -> list[str]:
    syllables = [syllable for run in _HAN_RUN.findall(text) for syllable in pinyin.syllables(run)]
    return _bigrams(syllables)


def _analysers(segmenter: Segmenter) -> dict[str, Callable[[str], list[str]]]:
    """Each feature channel's tokens of a text, by channel name (the order of the joint feature vector)."""
    return {
        "words": lambda text: _bigrams(segmenter.cut(_mask_digits(text))),
        "chars": _characters,
        "pinyin": _pinyin,
    }


def _hashed(values: Iterable[object]) -> str:
    digest = hashlib.sha256()
    for value in values:
        digest.update(json.dumps(value, ensure_ascii=False, sort_keys=True).encode())
    return digest.hexdigest()


def model_fingerprint(config: NluConfig) -> str:
    """What a trained model depends on: the training examples, the user dictionary, the hyper-parameters,
    the feature code (this module and the segmenter's, hashed as text) and the libraries' versions. Equal
    fingerprints give the same model."""
    versions = {name: importlib.metadata.version(name) for name in _TRAINING_PACKAGES}
    modules = (__file__, segmenter_module.__file__, dictionary_module.__file__, pinyin.__file__)
    sources = [Path(module).read_text(encoding="utf-8") for module in modules]
    return _hashed(
        (
            MODEL_FORMAT,
            config.training_examples(),
            sorted(config.lexicon.dictionary_words()),
            _C,
            _CHANNEL_WEIGHTS,
            versions,
            sources,
        )
    )[:24]


@dataclass(frozen=True)
class IntentModel:
    """A trained model, all that prediction needs: the classes, each channel's vocabulary (token → column
    of the joint feature vector), the idf of every column and the linear layer. Saved as one ``.npz``
    (no pickles), so a process can use a model another process trained without importing scikit-learn
    (~85 MB with SciPy)."""

    classes: list[str]
    vocabularies: dict[str, dict[str, int]]
    idf: np.ndarray[Any, np.dtype[np.float64]]
    coefficients: np.ndarray[Any, np.dtype[np.float64]]  # (features, classes)
    intercepts: np.ndarray[Any, np.dtype[np.float64]]

    def save(self, path: Path) -> None:
        """Written whole or not at all (a temporary file renamed over ``path``)."""
        meta = json.dumps(
            {"format": MODEL_FORMAT, "classes": self.classes, "vocabularies": self.vocabularies},
            ensure_ascii=False,
        )
        out = io.BytesIO()
        np.savez(
            out, meta=np.array(meta), idf=self.idf, coefficients=self.coefficients, intercepts=self.intercepts
        )
        write_whole(path, out.getvalue())

    @classmethod
    def load(cls, path: Path) -> IntentModel:
        """Raises ``OSError`` for a file that cannot be read, ``ValueError`` for one that is not a model of
        this format."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != MODEL_FORMAT:
                    raise ValueError(f"model format {meta.get('format')!r}, expected {MODEL_FORMAT}")
                model = cls(
                    classes=[str(name) for name in meta["classes"]],
                    vocabularies={
                        str(channel): {str(token): int(column) for token, column in vocabulary.items()}
                        for channel, vocabulary in meta["vocabularies"].items()
                    },
                    idf=np.asarray(data["idf"], dtype=np.float64),
                    coefficients=np.ascontiguousarray(data["coefficients"], dtype=np.float64),
                    intercepts=np.asarray(data["intercepts"], dtype=np.float64),
                )
        except (KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not an intent model: {exc}") from exc
        columns = sum(len(vocabulary) for vocabulary in model.vocabularies.values())
        if list(model.vocabularies) != list(_CHANNEL_WEIGHTS) or model.coefficients.shape != (
            columns,
            len(model.classes),
        ):
            raise ValueError("intent model's channels or shapes do not match")
        return model


def train_model(config: NluConfig, segmenter: Segmenter) -> tuple[IntentModel, Any]:
    """Fit the model on the configuration's examples (scikit-learn, imported here); also returns
    scikit-learn's fitted vectorizers and estimator, for ``IntentClassifier.reference_probabilities``."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    texts, labels = zip(*config.training_examples(), strict=True)
    vectorizers = {
        name: TfidfVectorizer(analyzer=analyse, sublinear_tf=True)
        for name, analyse in _analysers(segmenter).items()
    }
    features = sparse.hstack(
        [
            _CHANNEL_WEIGHTS[name] * vectorizer.fit_transform(texts)
            for name, vectorizer in vectorizers.items()
        ],
        format="csr",
    )
    estimator = LogisticRegression(C=_C, max_iter=2000)
    # One BLAS thread: on a busy 2-core machine a threaded solver runs ten times slower, not faster.
    with threadpool_limits(limits=1):
        estimator.fit(features, list(labels))
    vocabularies: dict[str, dict[str, int]] = {}
    offset = 0
    for name, vectorizer in vectorizers.items():
        vocabularies[name] = {
            str(token): int(column) + offset for token, column in vectorizer.vocabulary_.items()
        }
        offset += len(vectorizer.vocabulary_)
    model = IntentModel(
        classes=[str(name) for name in estimator.classes_],
        vocabularies=vocabularies,
        idf=np.concatenate([vectorizer.idf_ for vectorizer in vectorizers.values()]),
        coefficients=np.ascontiguousarray(estimator.coef_.T),
        intercepts=estimator.intercept_,
    )
    return model, (vectorizers, estimator)


class IntentClassifier:
    """``classify`` is read-only and safe from any thread. Given no ``model``, trains one on construction
    (well under a second, scikit-learn imported)."""

    def __init__(self, config: NluConfig, segmenter: Segmenter, model: IntentModel | None = None) -> None:
        self._keyword_weight = config.settings.keyword_weight
        self._rules = KeywordRules(
            {name: intent.keywords for name, intent in config.intents.items()},
            config.settings.keyword_max_words,
        )
        self._reference: Any = None
        if model is None:
            model, self._reference = train_model(config, segmenter)
        # Prediction does by hand what TfidfVectorizer.transform and predict_proba do (counts → 1 + log tf →
        # × idf → L2 norm → × channel weight → linear → softmax): for one short text sklearn's per-call input
        # checks cost several times the arithmetic. tests/nlu pins the two paths to the same numbers.
        analysers = _analysers(segmenter)
        self._channels = [
            _Channel(analysers[name], vocabulary, _CHANNEL_WEIGHTS[name])
            for name, vocabulary in model.vocabularies.items()
        ]
        self._classes = list(model.classes)
        self._idf = model.idf
        self._coefficients = model.coefficients
        self._intercepts = model.intercepts

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

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
        tests that pin ``model_probabilities`` to it). Only for a classifier that trained its own model."""
        if self._reference is None:
            raise RuntimeError("the model was loaded, not trained here: no scikit-learn reference")
        from scipy import sparse

        vectorizers, estimator = self._reference
        features = sparse.hstack(
            [
                _CHANNEL_WEIGHTS[name] * vectorizer.transform(texts)
                for name, vectorizer in vectorizers.items()
            ],
            format="csr",
        )
        return cast(np.ndarray[Any, np.dtype[np.float64]], estimator.predict_proba(features))

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
