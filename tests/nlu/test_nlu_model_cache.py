"""Long-running processes use an intent model trained once by a child process and kept on disk: they answer
exactly as a process that trained its own, never with a model of another configuration, and without
importing scikit-learn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from asr.nlu import DEFAULT_CONFIG_DIR, Analyzer
from tests.nlu.test_nlu_config import write_config

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "我要退货，订单号 12345",
    "我的快递到哪了",
    "I want a refund for order 88231",
    "退火",  # a homophone: the pinyin channel
    "今天天气怎么样",
    "",
]


def models(cache: Path) -> list[Path]:
    return sorted(cache.glob("intent-*.npz"))


def test_an_analyzer_on_a_cached_model_answers_exactly_as_one_that_trained_itself(
    analyzer: Analyzer, tmp_path: Path
) -> None:
    trained_by_child = Analyzer(model_cache=tmp_path)
    [saved] = models(tmp_path)
    written = saved.stat().st_mtime_ns
    loaded = Analyzer(model_cache=tmp_path)

    assert saved.stat().st_mtime_ns == written  # the second analyzer read the file, nobody trained again
    for candidate in (trained_by_child, loaded):
        assert candidate._classifier.classes == analyzer._classifier.classes
        for text in TEXTS:
            expected = analyzer._classifier.model_probabilities(text)
            assert np.abs(candidate._classifier.model_probabilities(text) - expected).max() < 1e-12
            assert candidate.analyze(text) == analyzer.analyze(text)


def test_the_default_analyzer_imports_neither_scikit_learn_nor_pypinyin(tmp_path: Path) -> None:
    """What the cache is for: the web process and the workers keep ~85 MB less (scikit-learn, SciPy); and
    the sound features read pypinyin's character table without its phrases (~50 MB less)."""
    script = (
        "import json, sys\n"
        "from asr.nlu import default_analyzer\n"
        "analysis = default_analyzer().analyze('我要退货，订单号 12345')\n"
        "heavy = sorted(m for m in ('sklearn', 'scipy', 'pypinyin') if m in sys.modules)\n"
        "print(json.dumps({'intent': analysis.intent, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    for _ in range(2):  # trained by a child, then read from the cache
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == {"intent": "return_request", "heavy": []}
    assert len(models(tmp_path / "huiliu" / "nlu")) == 1


def test_a_changed_configuration_gets_its_own_model(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config")
    cache = tmp_path / "cache"
    before = Analyzer(config, model_cache=cache)
    assert before.analyze("帮我查一下积分").intent != "loyalty_points"

    zh = yaml.safe_load((config / "zh.yaml").read_text(encoding="utf-8"))
    zh["intents"]["loyalty_points"] = {
        "label": "积分查询",
        "examples": ["帮我查一下积分", "我有多少积分", "积分怎么用", "积分可以换什么"],
    }
    (config / "zh.yaml").write_text(yaml.safe_dump(zh, allow_unicode=True), encoding="utf-8")
    en = yaml.safe_load((config / "en.yaml").read_text(encoding="utf-8"))
    en["intents"]["loyalty_points"] = {"label": "Loyalty points", "examples": ["how many points do I have"]}
    (config / "en.yaml").write_text(yaml.safe_dump(en, allow_unicode=True), encoding="utf-8")
    after = Analyzer(config, model_cache=cache)

    assert len(models(cache)) == 2
    assert "loyalty_points" in after._classifier.classes
    assert after.analyze("帮我查一下积分").intent == "loyalty_points"


def test_a_damaged_model_file_is_trained_again(analyzer: Analyzer, tmp_path: Path) -> None:
    Analyzer(model_cache=tmp_path)
    [saved] = models(tmp_path)
    saved.write_bytes(b"PK\x03\x04 not a model")

    repaired = Analyzer(model_cache=tmp_path)

    assert repaired.analyze("我要退货，订单号 12345") == analyzer.analyze("我要退货，订单号 12345")
    assert saved.stat().st_size > 1000  # written whole again


def test_a_cache_that_cannot_be_written_falls_back_to_training_in_the_process(
    analyzer: Analyzer, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")

    fallback = Analyzer(DEFAULT_CONFIG_DIR, model_cache=blocked / "nlu")

    assert fallback.analyze("我的快递到哪了") == analyzer.analyze("我的快递到哪了")
