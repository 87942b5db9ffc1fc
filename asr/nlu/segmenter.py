"""jieba word segmentation with the domain user dictionary.

A ``Segmenter`` builds its tokenizer lazily on first use, once, under a lock, over the process's compact
copy of jieba's dictionary (``asr.nlu.dictionary``, which the knowledge base's search uses too), and
``shared_segmenter`` hands every analyzer in the process the same segmenter for the same user dictionary.
After it is built the tokenizer is only read, which jieba allows from any thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from .dictionary import CompactTokenizer, base_tokenizer

_TOKEN = re.compile(r"\w", re.UNICODE)


class Segmenter:
    """Cuts text into words, keeping every user-dictionary word whole."""

    def __init__(self, user_words: Iterable[str]) -> None:
        # jieba cuts at spaces before it looks words up, so words with a space can never match.
        self._user_words = tuple(dict.fromkeys(word for word in user_words if word and " " not in word))
        self._tokenizer: CompactTokenizer | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the tokenizer now rather than on the first ``cut`` (for start-up and benchmarks)."""
        self._loaded()

    def _loaded(self) -> CompactTokenizer:
        tokenizer = self._tokenizer
        if tokenizer is not None:
            return tokenizer
        with self._lock:
            if self._tokenizer is None:
                # One base dictionary per process, compact (asr.nlu.dictionary), shared with the knowledge
                # base's search; the user words go to this tokenizer's own overlay.
                building = CompactTokenizer(base_tokenizer().FREQ.over())
                for word in self._user_words:
                    # A high frequency so that the dictionary word wins over jieba's own split.
                    building.add_word(word, freq=max(building.suggest_freq(word), 1000))
                self._tokenizer = building
            return self._tokenizer

    def cut(self, text: str) -> list[str]:
        """Words of ``text`` in order, lower-cased, without whitespace and punctuation tokens."""
        return [token.lower() for token in self._loaded().lcut(text) if _TOKEN.search(token)]


_shared: dict[tuple[str, ...], Segmenter] = {}
_shared_lock = threading.Lock()


def shared_segmenter(user_words: Iterable[str]) -> Segmenter:
    """The process-wide segmenter for this user dictionary (created on first request)."""
    key = tuple(sorted(set(user_words)))
    with _shared_lock:
        segmenter = _shared.get(key)
        if segmenter is None:
            segmenter = _shared[key] = Segmenter(key)
        return segmenter
