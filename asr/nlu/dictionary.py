"""jieba's dictionary in 3 MB instead of 65: a marisa trie of the words and an array of their frequencies.

jieba keeps its 349k-word dictionary as a Python dict of every word *and every prefix of every word*
(498k entries, ~65 MB in each process that segments text: the web, the Celery worker, a telephony worker
that hears speech). ``CompactTokenizer`` is a ``jieba.Tokenizer`` that reads the same words from a
``marisa_trie.Trie`` (1.2 MB) and a frequency array (1.4 MB) instead, and cuts exactly as jieba does (a
test cuts every Chinese line of the repository both ways): ``get_DAG`` asks the trie for every word that
starts at a position in one call, ``calc`` takes the frequencies found there, and what else jieba reads
(``FREQ.get``, ``in``, ``add_word``) goes through ``CompactWords``, a mapping with jieba's meaning (a word
→ its frequency, a prefix of a word → 0) and a small overlay for words added at run time.

The trie is built from jieba's ``dict.txt`` by a child process,

    python -m asr.nlu.dictionary CACHE_DIR

once per jieba dictionary (the file name carries a hash of it), and kept beside the intent model in
``asr.nlu.cache.default_cache_dir()``: building needs the words in a Python dict for a moment, and a
long-running process would keep most of that memory after freeing it. One file holds the trie and the
frequencies with a SHA-256 of both; a damaged file is built again. When the cache cannot be written or
the child fails, the process builds the trie itself (heavier, not broken).
"""

from __future__ import annotations

import array
import hashlib
import importlib.metadata
import json
import logging
import math
import sys
import threading
from pathlib import Path
from typing import Any

import marisa_trie

from core.files import write_whole
from core.log import get_logger

from .cache import default_cache_dir, made_once

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

log = get_logger(__name__)

FORMAT = "huiliu-jieba-words/1"
BUILD_TIMEOUT_SECONDS = 120


class CompactWords:
    """jieba's ``FREQ`` over a trie: ``get(word)`` is its frequency, ``get(prefix of a word)`` is 0, anything
    else ``None``. Words set at run time (``add_word``, ``suggest_freq(..., tune=True)``) go to an overlay;
    the trie itself is read-only and shared by every ``CompactWords.over`` copy."""

    def __init__(self, trie: marisa_trie.Trie, freqs: array.array[int], total: int) -> None:
        if len(freqs) != len(trie):
            raise ValueError(f"{len(trie)} words but {len(freqs)} frequencies")
        self.trie = trie
        self.freqs = freqs
        self.total = total
        self._extra: dict[str, int] = {}
        self._extra_by_first: dict[str, list[str]] = {}

    def over(self) -> CompactWords:
        """A copy with its own, empty overlay (the trie and the frequencies are shared)."""
        return CompactWords(self.trie, self.freqs, self.total)

    def get(self, word: str, default: int | None = None) -> int | None:
        freq = self._extra.get(word)
        if freq is not None:
            return freq
        key: int | None = self.trie.get(word)
        if key is not None:
            return self.freqs[key]
        if next(self.trie.iterkeys(word), None) is not None:
            return 0
        return default

    def __getitem__(self, word: str) -> int:
        freq = self.get(word)
        if freq is None:
            raise KeyError(word)
        return freq

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.get(word) is not None

    def __setitem__(self, word: str, freq: int) -> None:
        if word not in self._extra and word:
            self._extra_by_first.setdefault(word[0], []).append(word)
        self._extra[word] = freq

    def words_at(self, sentence: str, start: int) -> list[tuple[int, int]]:
        """(end index, frequency) of every word with a frequency that ``sentence`` has at ``start``, in
        order of length: what jieba's ``get_DAG`` finds by growing the fragment one character at a time."""
        rest = sentence[start:]
        extra = self._extra
        found = [
            (start + len(word) - 1, freq)
            for word, key in self.trie.iter_prefixes_with_ids(rest)
            if (freq := extra.get(word, self.freqs[key]))
        ]
        added = [
            (start + len(word) - 1, freq)
            for word in self._extra_by_first.get(rest[:1], ())
            if (freq := extra[word]) and rest.startswith(word) and self.trie.get(word) is None
        ]
        return sorted(found + added) if added else found


class CompactTokenizer(jieba.Tokenizer):  # type: ignore[misc]  # jieba has no type information
    """A ``jieba.Tokenizer`` over ``CompactWords``: the same cuts, ~60 MB less."""

    def __init__(self, words: CompactWords) -> None:
        super().__init__()
        self.FREQ = words
        self.total = words.total
        self.initialized = True

    def get_DAG(self, sentence: str) -> dict[int, list[int]]:  # jieba's name
        words: CompactWords = self.FREQ
        dag: dict[int, list[int]] = {}
        for start in range(len(sentence)):
            dag[start] = _Ends(words.words_at(sentence, start)) or _Ends([(start, 0)])
        return dag

    def calc(self, sentence: str, dag: dict[int, Any], route: dict[int, tuple[float, int]]) -> None:
        # jieba's calc, with the frequencies get_DAG found instead of a second lookup per edge
        length = len(sentence)
        route[length] = (0, 0)
        logtotal = math.log(self.total)
        for idx in range(length - 1, -1, -1):
            ends = dag[idx]
            freqs = (
                ends.freqs
                if isinstance(ends, _Ends)
                else [self.FREQ.get(sentence[idx : x + 1]) for x in ends]
            )
            route[idx] = max(
                (math.log(freq or 1) - logtotal + route[x + 1][0], x)
                for x, freq in zip(ends, freqs, strict=True)
            )


class _Ends(list[int]):
    """A DAG entry: the end indices, as jieba expects, and the frequency of each word."""

    def __init__(self, found: list[tuple[int, int]]) -> None:
        super().__init__(end for end, _ in found)
        self.freqs = [freq for _, freq in found]


def _dictionary_bytes() -> bytes:
    with jieba.get_dict_file() as file:
        data: bytes = file.read()
    return data


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(FORMAT.encode() + importlib.metadata.version("jieba").encode() + data).hexdigest()[
        :16
    ]


def _parse(data: bytes) -> tuple[dict[str, int], int]:
    # as jieba.Tokenizer.gen_pfdict: "word freq [tag]" per line; a repeated word keeps its last frequency
    # and counts in the total every time
    words: dict[str, int] = {}
    total = 0
    for number, raw in enumerate(data.decode("utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            word, freq_text = line.split(" ")[:2]
            freq = int(freq_text)
        except ValueError:
            raise ValueError(f"jieba dictionary line {number}: {line!r}") from None
        words[word] = freq
        total += freq
    return words, total


def build(data: bytes) -> CompactWords:
    """The compact dictionary of jieba dictionary text ``data``."""
    words, total = _parse(data)
    kept = [word for word, freq in words.items() if freq]
    trie = marisa_trie.Trie(kept)
    freqs = array.array("I", bytes(4 * len(trie)))
    for word in kept:
        freqs[trie.key_id(word)] = words[word]
    return CompactWords(trie, freqs, total)


def save(words: CompactWords, path: Path) -> None:
    """Write ``words`` to ``path`` whole (a temporary file renamed into place)."""
    trie_bytes = words.trie.tobytes()
    freq_bytes = words.freqs.tobytes() if sys.byteorder == "little" else _swapped(words.freqs)
    header = {
        "format": FORMAT,
        "total": words.total,
        "trie_bytes": len(trie_bytes),
        "sha256": hashlib.sha256(trie_bytes + freq_bytes).hexdigest(),
    }
    write_whole(path, json.dumps(header).encode() + b"\n" + trie_bytes + freq_bytes)


def load(path: Path) -> CompactWords:
    """The dictionary saved at ``path``; ValueError when the file is not a whole one of this format."""
    data = path.read_bytes()
    head, _, body = data.partition(b"\n")
    try:
        header = json.loads(head)
        if header["format"] != FORMAT:
            raise ValueError(f"format {header['format']!r}, expected {FORMAT!r}")
        size = int(header["trie_bytes"])
        if hashlib.sha256(body).hexdigest() != header["sha256"]:
            raise ValueError("checksum mismatch")
        trie = marisa_trie.Trie().frombytes(body[:size])
        freqs = array.array("I")
        freqs.frombytes(body[size:])
        if sys.byteorder != "little":
            freqs.byteswap()
        return CompactWords(trie, freqs, int(header["total"]))
    except (KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a compact jieba dictionary: {exc}") from None


def _swapped(freqs: array.array[int]) -> bytes:
    copy = array.array("I", freqs)
    copy.byteswap()
    return copy.tobytes()


def cached_words(cache_dir: Path) -> CompactWords:
    """jieba's dictionary, compact: read from ``cache_dir``, built there by a child process if missing or
    damaged, built in this process if that fails (logged)."""
    data = _dictionary_bytes()
    path = cache_dir / f"jieba-{_fingerprint(data)}.words"
    command = ("-m", "asr.nlu.dictionary", str(cache_dir))
    return made_once(path, load, command, timeout=BUILD_TIMEOUT_SECONDS, what="dictionary") or build(data)


_lock = threading.Lock()
_base: CompactTokenizer | None = None


def base_tokenizer() -> CompactTokenizer:
    """The process's tokenizer over jieba's own dictionary (the knowledge base's search cuts with it, and
    every ``Segmenter`` reads its words), loaded on first use."""
    global _base
    with _lock:
        if _base is None:
            jieba.setLogLevel(logging.WARNING)  # jieba prints its load progress at DEBUG otherwise
            _base = CompactTokenizer(cached_words(default_cache_dir()))
        return _base


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m asr.nlu.dictionary CACHE_DIR", file=sys.stderr)
        return 2
    data = _dictionary_bytes()
    save(build(data), Path(argv[0]) / f"jieba-{_fingerprint(data)}.words")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
