"""The evaluation set stays honest (separate from training, not even nearly copying it, big and balanced
enough) and the classifier keeps the accuracy measured on it. The floors sit a little below bench/intent.py's
figures (94.8 % overall, 97.2 % zh, 92.5 % en, 96.9 % ASR-style, 7.1 % of out-of-scope utterances given an
intent): a drop below them is a regression."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from asr.nlu import Analyzer
from asr.nlu.evaluation import (
    EvalReport,
    LabelledUtterance,
    evaluate,
    load_eval_set,
    near_training,
    training_overlap,
)


@pytest.fixture(scope="module")
def utterances() -> list[LabelledUtterance]:
    return load_eval_set()


@pytest.fixture(scope="module")
def report(analyzer: Analyzer, utterances: list[LabelledUtterance]) -> EvalReport:
    return evaluate(analyzer, utterances)


def test_no_eval_utterance_is_a_training_example(
    analyzer: Analyzer, utterances: list[LabelledUtterance]
) -> None:
    assert training_overlap(analyzer.config, utterances) == []


def test_no_eval_utterance_nearly_copies_a_training_example(
    analyzer: Analyzer, utterances: list[LabelledUtterance]
) -> None:
    # "wear is my refund" against "where is my refund" tests memory, not recognition of an ASR error.
    started = time.perf_counter()
    assert near_training(analyzer.config, utterances) == []
    assert time.perf_counter() - started < 5


def test_the_near_copy_check_catches_asr_spellings_of_a_training_example(analyzer: Analyzer) -> None:
    training_text = analyzer.config.intents["refund"].examples["en"][0]  # "I want a refund"
    spelled = LabelledUtterance("i wanna re fund", "refund", "en", asr_style=True)
    spaced = LabelledUtterance("退 款 怎 么 还 没 到", "refund", "zh", asr_style=True)

    assert [(text, example) for text, example, _ in near_training(analyzer.config, [spelled, spaced])] == [
        ("i wanna re fund", training_text),
        ("退 款 怎 么 还 没 到", "退款怎么还没到"),
    ]


def test_the_separation_check_catches_copies_differing_only_in_case_spacing_and_punctuation(
    analyzer: Analyzer,
) -> None:
    training_text = analyzer.config.intents["refund"].examples["en"][0]  # "I want a refund"
    copy = LabelledUtterance(f"  {training_text.upper()} !! ", "refund", "en", asr_style=False)

    assert training_overlap(analyzer.config, [copy]) == [copy.text]


def test_eval_set_is_large_bilingual_has_asr_errors_and_about_ten_percent_unknown(
    analyzer: Analyzer, utterances: list[LabelledUtterance]
) -> None:
    per_language = Counter(item.language for item in utterances)
    unknown_share = sum(item.intent == "unknown" for item in utterances) / len(utterances)

    assert len(utterances) >= 300
    assert per_language["zh"] >= 120 and per_language["en"] >= 120
    assert 0.08 <= unknown_share <= 0.12
    assert {item.language for item in utterances if item.asr_style} == {"zh", "en"}
    assert {item.intent for item in utterances} == {*analyzer.intents, "unknown"}
    assert len({item.text for item in utterances}) == len(utterances)


def test_accuracy_on_the_eval_set_stays_above_the_floor(report: EvalReport) -> None:
    misclassified = [f"{item.intent} → {guess}: {item.text}" for item, guess in report.errors()]
    assert report.accuracy() >= 0.93, misclassified
    assert report.accuracy(language="zh") >= 0.95, misclassified
    assert report.accuracy(language="en") >= 0.90, misclassified
    assert report.accuracy(asr_style=True) >= 0.93, misclassified


def test_out_of_scope_utterances_are_rarely_given_an_intent(report: EvalReport) -> None:
    assert report.false_accept_rate() <= 0.12


def test_every_intent_keeps_a_usable_f1(report: EvalReport) -> None:
    weak = {label: round(scores.f1, 2) for label, scores in report.per_intent().items() if scores.f1 < 0.85}
    assert weak == {}


def test_fast_prediction_gives_the_same_probabilities_as_scikit_learn(
    analyzer: Analyzer, utterances: list[LabelledUtterance]
) -> None:
    classifier = analyzer._classifier  # the fast path is internal; this pins it to the reference
    texts = [analyzer.analyze(item.text).text for item in utterances[::7]] + ["", "完全陌生的字眼"]
    fast = np.array([classifier.model_probabilities(text) for text in texts])

    assert np.abs(fast - classifier.reference_probabilities(texts)).max() < 1e-9
