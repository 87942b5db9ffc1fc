"""jieba's dictionary kept as a trie (``asr.nlu.dictionary``): every cut is the one jieba makes with its own
dictionary, words added at run time behave as in jieba, and the trie is built once per machine by a child
process, rebuilt when damaged, built in-process when the cache cannot be written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jieba
import pytest

from asr.nlu import dictionary
from asr.nlu.dictionary import CompactTokenizer, cached_words

REPO = Path(__file__).resolve().parents[2]
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def chinese_lines() -> list[str]:
    """Every line with Chinese in the repository's flows, NLU and KB data, docs and code (~2,000 lines)."""
    lines: dict[str, None] = {}
    for pattern in ("**/*.yaml", "**/*.md", "**/*.py", "**/*.html", "**/*.js"):
        for path in REPO.glob(pattern):
            if ".venv" in path.parts or "node_modules" in path.parts:
                continue
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if CHINESE.search(line):
                    lines[line.strip()] = None
    return list(lines)


@pytest.fixture(scope="module")
def pristine() -> jieba.Tokenizer:
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


@pytest.fixture(scope="module")
def compact() -> CompactTokenizer:
    return dictionary.base_tokenizer()


def test_every_cut_is_the_one_jieba_makes_with_its_own_dictionary(
    pristine: jieba.Tokenizer, compact: CompactTokenizer
) -> None:
    lines = chinese_lines()
    assert len(lines) > 1000
    for line in lines:
        assert compact.lcut(line) == pristine.lcut(line), line
        assert compact.lcut(line, HMM=False) == pristine.lcut(line, HMM=False), line
        assert compact.lcut_for_search(line) == pristine.lcut_for_search(line), line
        assert compact.lcut(line, cut_all=True) == pristine.lcut(line, cut_all=True), line


def test_words_added_and_removed_at_run_time_cut_as_in_jieba(compact: CompactTokenizer) -> None:
    private = jieba.Tokenizer()
    private.initialize()
    overlay = CompactTokenizer(compact.FREQ.over())
    texts = ["扫地机器人坏了要换货", "苹果15的耳机没声音", "我想退货退款", "汇流客服中心转人工"]
    for tokenizer in (private, overlay):
        tokenizer.add_word("扫地机器人", freq=tokenizer.suggest_freq("扫地机器人"))
        tokenizer.add_word("苹果15", freq=1000)
        tokenizer.add_word("汇流客服", freq=5000)  # a word that is not in jieba's dictionary at all
        tokenizer.del_word("退款")  # a dictionary word, removed
    for text in texts:
        assert overlay.lcut(text) == private.lcut(text), text
        assert overlay.lcut_for_search(text) == private.lcut_for_search(text), text
    assert "扫地机器人" in overlay.lcut(texts[0]) and "汇流客服" in overlay.lcut(texts[3])
    assert "退款" not in overlay.lcut(texts[2])
    # the overlay is the copy's own: the process's base tokenizer still knows 退款 and not 汇流客服
    assert "退款" in compact.lcut(texts[2]) and "汇流客服" not in compact.lcut(texts[3])


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("jieba-*.words"))


def test_the_trie_is_built_once_by_a_child_and_then_read(
    tmp_path: Path, compact: CompactTokenizer, pristine: jieba.Tokenizer
) -> None:
    words = cached_words(tmp_path)
    [path] = cache_files(tmp_path)
    built = path.stat().st_mtime_ns
    assert len(words.trie) == len(compact.FREQ.trie) > 300_000
    assert words.total == compact.FREQ.total
    again = cached_words(tmp_path)
    assert path.stat().st_mtime_ns == built
    # jieba's meaning: a word → its frequency, a prefix of a word → 0, anything else absent
    sample = list(pristine.FREQ.items())[::50]
    assert {0} < {freq for _, freq in sample}
    assert [again.get(word) for word, _ in sample] == [freq for _, freq in sample]
    assert again.get("汇流客服") is None and "汇流客服" not in again


def test_a_damaged_file_is_built_again(tmp_path: Path, compact: CompactTokenizer) -> None:
    cached_words(tmp_path)
    [path] = cache_files(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        dictionary.load(path)
    repaired = cached_words(tmp_path)
    assert CompactTokenizer(repaired).lcut("我想退货退款") == compact.lcut("我想退货退款")
    dictionary.load(path)  # whole again
    path.write_bytes(b"not a dictionary")
    with pytest.raises(ValueError, match="not a compact jieba dictionary"):
        dictionary.load(path)


def test_an_unwritable_cache_still_gives_the_dictionary(tmp_path: Path, compact: CompactTokenizer) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory should be")
    words = cached_words(blocked / "nlu")
    assert CompactTokenizer(words).lcut("华为手机屏幕坏了") == compact.lcut("华为手机屏幕坏了")


def test_segmenting_never_loads_jiebas_own_dictionary(tmp_path: Path) -> None:
    """What the ~60 MB is about: a process that segments (the NLU and the knowledge base's search) keeps the
    trie, not jieba's dict of 500k words and prefixes."""
    code = (
        "import jieba\n"
        "from asr.nlu.segmenter import Segmenter\n"
        "from omnichannel.channels.kb import tokenize\n"
        "print(Segmenter(['扫地机器人']).cut('扫地机器人坏了'), tokenize('怎么申请退货'))\n"
        "assert not jieba.dt.initialized and not jieba.dt.FREQ\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['扫地机器人', '坏', '了'] ['申请', '退货']"
    assert cache_files(tmp_path / "huiliu" / "nlu")
