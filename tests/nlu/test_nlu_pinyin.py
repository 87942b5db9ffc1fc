"""The intent model's sound features read pypinyin's character table directly: every character reads as
pypinyin reads it alone, so homophones meet as they did."""

from __future__ import annotations

from pypinyin import Style, lazy_pinyin

from asr.nlu.pinyin import _table, syllables, toneless


def test_every_character_reads_as_pypinyin_reads_it_alone() -> None:
    table = _table()
    assert len(table) > 40_000
    differing = {
        char: (reading, lazy_pinyin(char, style=Style.NORMAL))
        for char, reading in table.items()
        if [reading] != lazy_pinyin(char, style=Style.NORMAL)
    }
    assert differing == {}


def test_homophones_read_alike_and_what_is_not_chinese_is_skipped() -> None:
    assert syllables("退货") == syllables("退火") == ["tui", "huo"]
    assert syllables("订单号 12345，OK") == ["ding", "dan", "hao"]
    assert toneless("lǜ") == "lv" and toneless("nǚ") == "nv" and toneless("zhuāng") == "zhuang"
