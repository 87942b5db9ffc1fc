"""The knowledge base's ranking on its own: BM25 order, coverage as confidence, language filter."""

from __future__ import annotations

import datetime as dt

from omnichannel.channels.kb import DEMO_ARTICLES, Bm25Index, KbArticle, tokenize

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def index() -> Bm25Index:
    articles = [
        KbArticle(id=f"a{number}", created_at=AT, updated_at=AT, **new.model_dump())
        for number, new in enumerate(DEMO_ARTICLES)
    ]
    return Bm25Index(articles)


def test_a_question_in_other_words_finds_its_article_with_full_confidence() -> None:
    [best, *_] = index().search("你们几点上班？")
    assert best.article.title == "营业时间" and best.confidence == 1.0
    [best, *_] = index().search("What are your opening hours?", language="en")
    assert best.article.title == "Opening hours" and best.confidence == 1.0


def test_function_words_do_not_count_and_unrelated_questions_find_nothing() -> None:
    assert "的" not in tokenize("我的订单的运费") and "运费" in tokenize("我的订单的运费")
    assert index().search("今天天气怎么样") == []
    assert index().search("do you sell cars") == []


def test_a_partly_covered_question_has_a_lower_confidence_than_a_full_match() -> None:
    full = index().search("运费多少钱")[0]
    partial = index().search("退货的运费谁出，包装盒丢了还能退吗")[0]
    assert full.confidence == 1.0 and partial.confidence < 1.0


def test_the_language_filter_keeps_answers_in_the_visitors_language() -> None:
    hits = index().search("shipping 运费", language="zh")
    assert hits and all(hit.article.language == "zh" for hit in hits)
