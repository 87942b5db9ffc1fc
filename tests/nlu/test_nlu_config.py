"""Deployments configure intents in YAML; mistakes are reported by file and key; loading is shared and
thread-safe."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from asr.nlu import DEFAULT_CONFIG_DIR, Analyzer, Priority, UnknownReason, load_config
from asr.nlu.segmenter import shared_segmenter
from core.errors import Invalid


def write_config(directory: Path, *, nlu: dict[str, object] | None = None) -> Path:
    """A small two-intent configuration that shares the packaged lexicon (and so jieba's segmenter)."""
    directory.mkdir(exist_ok=True)
    for name in ("lexicon.yaml", "sentiment.yaml"):
        shutil.copy(DEFAULT_CONFIG_DIR / name, directory / name)
    settings = {"unknown_threshold": 0.5, "intent_priority": {"warranty_claim": "high"}, **(nlu or {})}
    (directory / "nlu.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    zh = {
        "language": "zh",
        "intents": {
            "warranty_claim": {
                "label": "保修申请",
                "keywords": ["保修"],
                "examples": ["我要申请保修", "还在保修期吗", "保修怎么办理", "东西坏了能保修吗"],
            },
            "store_hours": {
                "label": "营业时间",
                "keywords": ["营业"],
                "examples": ["你们几点开门", "营业时间是几点", "周末营业吗", "晚上几点关门"],
            },
        },
        "out_of_scope": ["今天天气怎么样", "给我讲个笑话", "你叫什么名字"],
    }
    en = {
        "language": "en",
        "intents": {
            "warranty_claim": {
                "label": "Warranty claim",
                "keywords": ["warranty"],
                "examples": ["I want to make a warranty claim", "is it still under warranty"],
            },
            "store_hours": {
                "label": "Store hours",
                "keywords": ["opening hours"],
                "examples": ["what are your opening hours", "when do you close"],
            },
        },
        "out_of_scope": ["tell me a joke", "what's the weather"],
    }
    for language, content in (("zh", zh), ("en", en)):
        (directory / f"{language}.yaml").write_text(
            yaml.safe_dump(content, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
    return directory


@pytest.fixture(scope="module")
def custom_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("nlu") / "config")


def test_a_deployment_brings_its_own_intents_labels_and_priorities(custom_config: Path) -> None:
    analyzer = Analyzer(custom_config)

    analysis = analyzer.analyze("我的扫地机器人还在保修期内吗")

    assert analyzer.intents == ["warranty_claim", "store_hours"]
    assert analysis.intent == "warranty_claim"
    assert (analysis.label.zh, analysis.label.en) == ("保修申请", "Warranty claim")
    assert analysis.priority is Priority.high
    assert analyzer.analyze("when do you open on Sunday").intent == "store_hours"


def test_raising_the_threshold_turns_a_hesitant_answer_into_unknown(custom_config: Path) -> None:
    strict = Analyzer(custom_config, unknown_threshold=0.99)

    analysis = strict.analyze("保修怎么弄")

    assert analysis.intent == "unknown"
    assert analysis.unknown_reason is UnknownReason.low_confidence
    assert analysis.alternatives[0].intent == "warranty_claim"


def test_max_chars_is_configurable(custom_config: Path) -> None:
    analyzer = Analyzer(custom_config, max_chars=20)

    analysis = analyzer.analyze("我要申请保修" + "，" * 100)

    assert analysis.truncated and len(analysis.text) <= 20


def edit(directory: Path, name: str, change: dict[str, object]) -> None:
    path = directory / name
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    content.update(change)
    path.write_text(yaml.safe_dump(content, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "zh.yaml").unlink(), "zh.yaml is missing"),
        (
            lambda d: (d / "en.yaml").write_text("intents: [unclosed", encoding="utf-8"),
            "en.yaml is not valid YAML",
        ),
        (lambda d: edit(d, "nlu.yaml", {"unknown_threshold": 1.5}), "nlu.yaml: unknown_threshold"),
        (
            lambda d: edit(d, "nlu.yaml", {"timezone": "Mars/Olympus"}),
            "nlu.yaml: timezone: Value error, unknown",
        ),
        (lambda d: edit(d, "nlu.yaml", {"languages": ["zh", "fr"]}), "unsupported languages ['fr']"),
        (
            lambda d: edit(d, "nlu.yaml", {"intent_priority": {"nope": "high"}}),
            "intent_priority: names unknown",
        ),
        (lambda d: edit(d, "nlu.yaml", {"bogus": 1}), "nlu.yaml: bogus: Extra inputs are not permitted"),
        (lambda d: edit(d, "en.yaml", {"language": "zh"}), "en.yaml: language: says 'zh', expected 'en'"),
        (
            lambda d: edit(d, "en.yaml", {"intents": {"store_hours": {"label": "x", "examples": ["y"]}}}),
            "differ",
        ),
        (
            lambda d: edit(d, "zh.yaml", {"intents": {"warranty_claim": {"label": "保修", "examples": []}}}),
            "zh.yaml: intents.warranty_claim.examples",
        ),
        (
            lambda d: edit(d, "zh.yaml", {"intents": {"unknown": {"label": "x", "examples": ["y"]}}}),
            "reserved",
        ),
        (
            lambda d: edit(d, "lexicon.yaml", {"products": [{"aliases": ["x"]}]}),
            "lexicon.yaml: products.0.name",
        ),
    ],
)
def test_a_broken_config_is_refused_with_the_file_and_key_named(
    tmp_path: Path, breakage: object, message: str
) -> None:
    directory = write_config(tmp_path / "config")
    breakage(directory)  # type: ignore[operator]

    with pytest.raises(Invalid) as raised:
        load_config(directory)

    assert raised.value.code == "nlu_config_invalid"
    assert message in raised.value.detail


def test_jieba_keeps_the_domain_words_whole(analyzer: Analyzer) -> None:
    segmenter = shared_segmenter(analyzer.config.lexicon.dictionary_words())

    assert "扫地机器人" in segmenter.cut("我的扫地机器人坏了")
    assert "七天无理由退货" in segmenter.cut("能七天无理由退货吗")
    assert "订单号" in segmenter.cut("订单号是多少")


def test_the_segmenter_is_built_once_and_shared_by_every_thread(analyzer: Analyzer) -> None:
    words = analyzer.config.lexicon.dictionary_words()
    barrier = threading.Barrier(8)

    def get() -> object:
        barrier.wait()
        return shared_segmenter(reversed(words))

    with ThreadPoolExecutor(8) as pool:
        segmenters = {id(segmenter) for segmenter in pool.map(lambda _: get(), range(8))}

    assert segmenters == {id(shared_segmenter(words))}


def test_concurrent_analysis_from_many_threads_gives_the_same_answers(analyzer: Analyzer) -> None:
    texts = ["我要退货，订单号 12345", "where is my order", "转人工", "发票抬头错了", "今天天气怎么样"] * 20
    expected = [analyzer.analyze(text) for text in texts]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(analyzer.analyze, texts))

    assert results == expected
