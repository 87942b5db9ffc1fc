"""jieba word segmentation with the domain user dictionary.

jieba's base dictionary costs about a second and 70 MB to load, so a ``Segmenter`` builds its tokenizer
lazily on first use, once, under a lock, over jieba's default dictionary (which the knowledge base's search
uses too), and ``shared_segmenter`` hands every analyzer in the process the same segmenter for the same
user dictionary. After it is built the tokenizer is only read, which jieba allows from any thread.
"""

from __future__ import annotations

import collections
import logging
import re
import sys
import threading
from collections.abc import Iterable

# jieba 0.42 imports pkg_resources (deprecated; 14 MB and a scan of every installed distribution) only to
# open its own dictionary file, and opens it with plain open() when that import fails: make it fail, unless
# another module already paid for pkg_resources.
_SKIP_PKG_RESOURCES = "pkg_resources" not in sys.modules and "jieba" not in sys.modules
if _SKIP_PKG_RESOURCES:
    sys.modules["pkg_resources"] = None  # type: ignore[assignment]  # None there: import raises ImportError
try:
    import jieba
finally:
    if _SKIP_PKG_RESOURCES:
        del sys.modules["pkg_resources"]

_TOKEN = re.compile(r"\w", re.UNICODE)


class Segmenter:
    """Cuts text into words, keeping every user-dictionary word whole."""

    def __init__(self, user_words: Iterable[str]) -> None:
        # jieba cuts at spaces before it looks words up, so words with a space can never match.
        self._user_words = tuple(dict.fromkeys(word for word in user_words if word and " " not in word))
        self._tokenizer: jieba.Tokenizer | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the tokenizer now rather than on the first ``cut`` (for start-up and benchmarks)."""
        self._loaded()

    def _loaded(self) -> jieba.Tokenizer:
        tokenizer = self._tokenizer
        if tokenizer is not None:
            return tokenizer
        with self._lock:
            if self._tokenizer is None:
                jieba.setLogLevel(logging.WARNING)  # jieba prints its load progress at DEBUG otherwise
                # One base dictionary per process: the knowledge base's search (omnichannel/channels/kb.py)
                # cuts with jieba's default tokenizer, so this one reads that tokenizer's dictionary through
                # an overlay that holds the user words, instead of loading a second copy (~70 MB). Cuts are
                # the same as with a private dictionary, at ~0.1 ms more per text.
                base = jieba.dt
                base.check_initialized()
                building = jieba.Tokenizer()
                building.FREQ = collections.ChainMap({}, base.FREQ)
                building.total = base.total
                building.initialized = True
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
