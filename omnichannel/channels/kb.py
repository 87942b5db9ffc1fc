"""The knowledge base the bot answers from: ``kb_articles`` (Chinese and English), searched with BM25 over
jieba tokens.

Ranking is Okapi BM25 (k1 = 1.5, b = 0.75) over the title (counted twice), the question variants and the
body. The *confidence* of the best article is how much of the question it covers: the share of the query's
IDF weight whose terms the article contains. BM25 scores are not comparable between queries; coverage is,
so one threshold (``HUILIU_BOT_KB_THRESHOLD``) means the same for a short and a long question.

Each process keeps the index in memory and rebuilds it when the collection changed (checked at most every
two seconds), so an article edited on one web node answers on every node shortly after.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from core.db import Database, as_utc, register_indexes, utcnow
from core.errors import NotFound

register_indexes("kb_articles", IndexModel([("language", ASCENDING), ("updated_at", DESCENDING)]))

KbLanguage = Literal["zh", "en"]
_K1 = 1.5
_B = 0.75
_RECHECK_SECONDS = 2.0
_WORD = re.compile(r"[a-z0-9]+(?:['.-][a-z0-9]+)*|[\u4e00-\u9fff]+")
# Function words that carry no topic: a question "我的…是什么" should not match an article for its 的 and 是.
_STOPWORDS = frozenset(
    "的 了 吗 呢 吧 啊 呀 是 我 我们 你 你们 您 他 她 它 在 有 和 与 或 就 都 也 要 想 请 请问 "
    "怎么 怎样 如何 什么 哪 哪里 哪些 多少 几 一下 可以 能 能不能 会 这 那 这个 那个 个 么 还 又 "
    "给 把 被 让 知道 我想 想要 我要 怎么样 告诉 关于 问 问下 问一下 "
    "a an the is are was were be been am do does did i me my we our you your he she it its they them "
    "to of in on at for from by with and or not no can could would should will shall how what when "
    "where which who why there this that these those have has had please hi hello".split()
)


class KbArticle(BaseModel):
    id: str
    language: KbLanguage
    title: str
    body: str
    questions: list[str] = Field(description="Other ways customers ask it")
    tags: list[str]
    enabled: bool
    created_at: Any
    updated_at: Any


class NewKbArticle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: KbLanguage
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=10_000)
    questions: list[str] = Field(default_factory=list, max_length=30)
    tags: list[str] = Field(default_factory=list, max_length=20)
    enabled: bool = True


class KbArticlePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: KbLanguage | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, min_length=1, max_length=10_000)
    questions: list[str] | None = Field(default=None, max_length=30)
    tags: list[str] | None = Field(default=None, max_length=20)
    enabled: bool | None = None


class KbHit(BaseModel):
    article: KbArticle
    score: float = Field(description="BM25 score (only comparable within one query)")
    confidence: float = Field(ge=0, le=1, description="Share of the question's IDF weight covered")


def tokenize(text: str) -> list[str]:
    """Lower-cased words: jieba's search-mode segments for Chinese runs, whole words for Latin text."""
    from asr.nlu.dictionary import base_tokenizer  # jieba: imported, and its dictionary read, on first use

    tokens: list[str] = []
    for match in _WORD.finditer(text.lower()):
        word = match.group()
        if "\u4e00" <= word[0] <= "\u9fff":
            tokens.extend(part for part in base_tokenizer().lcut_for_search(word) if part.strip())
        else:
            tokens.append(word)
    return [token for token in tokens if token not in _STOPWORDS]


@dataclass
class _Doc:
    article: KbArticle
    terms: Counter[str]
    length: int


class Bm25Index:
    """BM25 over a fixed set of articles; build once, query many times (pure, no I/O)."""

    def __init__(self, articles: list[KbArticle]) -> None:
        self.docs = []
        for article in articles:
            text = " ".join([article.title, article.title, *article.questions, article.body])
            terms = tokenize(text)
            self.docs.append(_Doc(article, Counter(terms), len(terms)))
        self.average = sum(doc.length for doc in self.docs) / len(self.docs) if self.docs else 0.0
        frequency: Counter[str] = Counter()
        for doc in self.docs:
            frequency.update(doc.terms.keys())
        total = len(self.docs)
        self.idf = {
            term: math.log(1 + (total - count + 0.5) / (count + 0.5)) for term, count in frequency.items()
        }
        # A query word no article contains weighs like the rarest possible word: it lowers the coverage.
        self.unseen_idf = math.log(1 + (total + 0.5) / 0.5) if total else 1.0

    def search(self, query: str, *, language: str | None = None, limit: int = 3) -> list[KbHit]:
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms or not self.docs:
            return []
        hits: list[KbHit] = []
        query_weight = sum(self.idf.get(term, self.unseen_idf) for term in terms)
        for doc in self.docs:
            if language is not None and doc.article.language != language:
                continue
            score = 0.0
            covered = 0.0
            for term in terms:
                tf = doc.terms.get(term, 0)
                if not tf:
                    continue
                idf = self.idf[term]
                covered += idf
                norm = tf + _K1 * (1 - _B + _B * doc.length / (self.average or 1.0))
                score += idf * tf * (_K1 + 1) / norm
            if score > 0:
                hits.append(
                    KbHit(article=doc.article, score=score, confidence=min(1.0, covered / query_weight))
                )
        hits.sort(key=lambda hit: (-hit.score, hit.article.id))
        return hits[:limit]


def article_from_doc(doc: dict[str, Any]) -> KbArticle:
    return KbArticle(
        id=str(doc["_id"]),
        language=doc["language"],
        title=doc["title"],
        body=doc["body"],
        questions=doc.get("questions", []),
        tags=doc.get("tags", []),
        enabled=doc.get("enabled", True),
        created_at=as_utc(doc["created_at"]),
        updated_at=as_utc(doc["updated_at"]),
    )


class KnowledgeBase:
    def __init__(self, db: Database) -> None:
        self.articles = db["kb_articles"]
        self._index = Bm25Index([])
        self._stamp: tuple[int, Any] | None = None
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def create(self, new: NewKbArticle) -> KbArticle:
        now = utcnow()
        doc = {"_id": ObjectId(), **new.model_dump(), "created_at": now, "updated_at": now}
        await self.articles.insert_one(doc)
        self._checked = 0.0
        return article_from_doc(doc)

    async def ensure(self, new: NewKbArticle) -> KbArticle:
        """Create the article unless one with that language and title exists (demo seeding)."""
        existing = await self.articles.find_one({"language": new.language, "title": new.title})
        return article_from_doc(existing) if existing else await self.create(new)

    async def get(self, article_id: str) -> KbArticle:
        doc = await self.articles.find_one({"_id": _oid(article_id)})
        if doc is None:
            raise NotFound(f"no knowledge base article {article_id}", code="kb_article_not_found")
        return article_from_doc(doc)

    async def list_articles(self, language: str | None = None, limit: int = 200) -> list[KbArticle]:
        query = {"language": language} if language else {}
        cursor = self.articles.find(query, sort=[("updated_at", -1), ("_id", -1)], limit=limit)
        return [article_from_doc(doc) async for doc in cursor]

    async def update(self, article_id: str, patch: KbArticlePatch) -> KbArticle:
        changes = patch.model_dump(exclude_none=True)
        changes["updated_at"] = utcnow()
        doc = await self.articles.find_one_and_update(
            {"_id": _oid(article_id)}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise NotFound(f"no knowledge base article {article_id}", code="kb_article_not_found")
        self._checked = 0.0
        return article_from_doc(doc)

    async def delete(self, article_id: str) -> None:
        result = await self.articles.delete_one({"_id": _oid(article_id)})
        if result.deleted_count != 1:
            raise NotFound(f"no knowledge base article {article_id}", code="kb_article_not_found")
        self._checked = 0.0

    async def search(self, query: str, *, language: str | None = None, limit: int = 3) -> list[KbHit]:
        """The best enabled articles for ``query`` (in ``language`` when given), best first."""
        index = await self._current()
        return await asyncio.to_thread(index.search, query, language=language, limit=limit)

    async def _current(self) -> Bm25Index:
        if time.monotonic() - self._checked < _RECHECK_SECONDS:
            return self._index
        async with self._lock:
            if time.monotonic() - self._checked < _RECHECK_SECONDS:
                return self._index
            count = await self.articles.count_documents({})
            newest = await self.articles.find_one({}, {"updated_at": 1}, sort=[("updated_at", -1)])
            stamp = (count, newest["updated_at"] if newest else None)
            if stamp != self._stamp:
                docs = [
                    article_from_doc(doc)
                    async for doc in self.articles.find({"enabled": True}, sort=[("_id", 1)])
                ]
                self._index = await asyncio.to_thread(Bm25Index, docs)
                self._stamp = stamp
            self._checked = time.monotonic()
        return self._index


def _oid(value: str) -> ObjectId:
    if not ObjectId.is_valid(value):
        raise NotFound(f"no knowledge base article {value}", code="kb_article_not_found")
    return ObjectId(value)


DEMO_ARTICLES = (
    NewKbArticle(
        language="zh",
        title="营业时间",
        body="人工客服服务时间为每天 9:00–21:00（节假日照常）。其他时间您可以留言，我们上班后第一时间回复。",
        questions=["你们几点上班", "客服什么时候有人", "营业时间是几点到几点", "周末有客服吗"],
        tags=["service"],
    ),
    NewKbArticle(
        language="zh",
        title="退货政策",
        body="签收后 7 天内可无理由退货，商品需保持完好、配件齐全。"
        "在订单页面点击“申请退货”，或直接告诉我订单号，我们会为您创建退货工单。"
        "退款在收到退货后 3 个工作日内原路退回。",
        questions=["怎么退货", "可以退货吗", "退货要多久", "七天无理由退货"],
        tags=["after_sales"],
    ),
    NewKbArticle(
        language="zh",
        title="运费与配送时间",
        body="订单满 99 元包邮，不满 99 元收取运费 10 元。江浙沪一般 1–2 天送达，其他地区 2–5 天。",
        questions=["运费多少钱", "多久能到", "包邮吗", "发什么快递"],
        tags=["logistics"],
    ),
    NewKbArticle(
        language="zh",
        title="发票开具",
        body="电子发票在订单签收后自动开具，可在“我的订单 → 发票”下载；"
        "需要增值税专用发票请提供公司名称和税号。",
        questions=["怎么开发票", "发票在哪里下载", "能开专票吗"],
        tags=["finance"],
    ),
    NewKbArticle(
        language="en",
        title="Opening hours",
        body="Our agents are available every day from 9:00 to 21:00 (China time), holidays included. "
        "Outside those hours leave a message and we reply first thing.",
        questions=["when are you open", "what are your opening hours", "is anyone there on weekends"],
        tags=["service"],
    ),
    NewKbArticle(
        language="en",
        title="Return policy",
        body="You can return any item within 7 days of delivery if it is complete and undamaged. Click "
        "'Request return' on the order page, or tell me the order number and I will open a return for you. "
        "Refunds reach your original payment method within 3 working days of us receiving the item.",
        questions=["how do I return an item", "can I return this", "how long do refunds take"],
        tags=["after_sales"],
    ),
    NewKbArticle(
        language="en",
        title="Shipping costs and delivery times",
        body="Shipping is free on orders over 99 CNY, otherwise 10 CNY. Delivery takes 1-2 days in the "
        "Shanghai region and 2-5 days elsewhere.",
        questions=["how much is shipping", "how long does shipping take", "is delivery free"],
        tags=["logistics"],
    ),
)
