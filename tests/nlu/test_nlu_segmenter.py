"""The NLU's word segmentation reads the process's one copy of jieba's dictionary (which the knowledge
base's search reads too) through an overlay holding the domain words: one dictionary in memory instead of
two, and neither side's cuts change — the NLU's are those of a tokenizer with its own copy of the
dictionary, the knowledge base's those of jieba without the domain words."""

from __future__ import annotations

import re

import jieba
import pytest

from asr.nlu import Analyzer, dictionary
from asr.nlu.config import load_config
from asr.nlu.segmenter import Segmenter
from omnichannel.channels.kb import DEMO_ARTICLES, tokenize

TEXTS = [
    "我要退货，订单号 12345",
    "我的扫地机器人坏了，订单号是A2024112501，我要换货",
    "苹果15的耳机没声音了，七天无理由退货可以吗",
    "能开增值税专用发票吗？怎么改收货地址",
    "转人工，我要找人工客服投诉快递员",
    "华为mate60 已经付款了但是库存不足，换一台小米14",
    *(text for article in DEMO_ARTICLES for text in (article.title, *article.questions)),
]


@pytest.fixture(scope="module")
def pristine() -> jieba.Tokenizer:
    """A tokenizer with its own copy of jieba's dictionary, nothing added."""
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def test_nlu_cuts_keep_domain_words_whole_as_with_a_private_dictionary(pristine: jieba.Tokenizer) -> None:
    words = load_config().lexicon.dictionary_words()
    private = jieba.Tokenizer()
    private.initialize()
    for word in dict.fromkeys(word for word in words if word and " " not in word):
        private.add_word(word, freq=max(private.suggest_freq(word), 1000))
    shared = Segmenter(words)
    for text in TEXTS:
        expected = [token.lower() for token in private.lcut(text) if re.search(r"\w", token)]
        assert shared.cut(text) == expected, text
    assert "扫地机器人" in shared.cut(TEXTS[1]) and "苹果15" in shared.cut(TEXTS[2])


def test_knowledge_base_cuts_ignore_the_nlu_domain_words(
    analyzer: Analyzer, pristine: jieba.Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzer.analyze("转人工")  # the NLU's segmenter is loaded over jieba's default dictionary
    with_nlu_loaded = [tokenize(text) for text in TEXTS]
    monkeypatch.setattr(dictionary, "base_tokenizer", lambda: pristine)
    assert with_nlu_loaded == [tokenize(text) for text in TEXTS]
    assert "转人工" not in with_nlu_loaded[4]  # an NLU order term, which jieba alone splits
