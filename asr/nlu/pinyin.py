"""Toneless pinyin of single Chinese characters: the intent model's sound features and keyword rules.

The table is pypinyin's own (``pinyin_dict.json``, ~42k characters, each its readings most common first),
read straight from its file. Importing pypinyin would also load its 47k phrases and a prefix set of them
(~45 MB more) to choose a polyphone's reading by the word around it, which sound features do not need: a
character reads the same way when the model is trained and when it predicts, and homophones still meet
(退火 and 退货 are both "tui huo"). Spoken prompts, where the right reading matters, use pypinyin itself
(``ivr_flows.tts``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import unicodedata
from pathlib import Path

_DIAERESIS = "\u0308"


def toneless(reading: str) -> str:
    """``lǜ`` → ``lv``: tone marks dropped, ü written v (pypinyin's ``Style.NORMAL``)."""
    decomposed = unicodedata.normalize("NFD", reading).replace("u" + _DIAERESIS, "v")
    return "".join(char for char in decomposed if not unicodedata.combining(char))


@functools.cache
def _table() -> dict[str, str]:
    spec = importlib.util.find_spec("pypinyin")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pypinyin is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pinyin_dict.json"
    readings: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return {chr(int(code)): sys.intern(toneless(both.split(",")[0])) for code, both in readings.items()}


def syllables(text: str) -> list[str]:
    """The toneless syllable of every character of ``text`` that has one, in order."""
    table = _table()
    return [table[char] for char in text if char in table]
