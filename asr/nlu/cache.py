"""Where the NLU keeps what it derives once per machine (the intent model, jieba's compact dictionary)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/huiliu/nlu`` (``~/.cache/huiliu/nlu``): derived files, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huiliu" / "nlu"
