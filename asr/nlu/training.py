"""The intent model of long-running processes: trained once in a child process, kept on disk.

scikit-learn and SciPy take ~85 MB of a process that imports them, and they are only needed to fit the
model; predicting needs NumPy alone (``IntentClassifier``). So ``cached_model`` looks for
``intent-<fingerprint>.npz`` in the cache directory and, when it is missing or unreadable, runs

    python -m asr.nlu.training CONFIG_DIR OUTPUT

to train it (a couple of seconds, once per configuration and code version: ``model_fingerprint``), then
loads the file. A new YAML example, a new user-dictionary word or a changed feature function gives a new
fingerprint, so a stale model is never used. When the cache cannot be written or the child fails, it
returns None and the caller trains in its own process, as before: slower to start and heavier, not broken.
Two processes starting together may both train; each writes its file whole and the last rename wins.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.log import get_logger

from .cache import made_once
from .classifier import IntentModel, model_fingerprint, train_model
from .config import NluConfig, load_config
from .segmenter import shared_segmenter

log = get_logger(__name__)

TRAIN_TIMEOUT_SECONDS = 300  # a cold machine: jieba's dictionary, scikit-learn's import, the fit


def cached_model(config: NluConfig, config_dir: Path, cache_dir: Path) -> IntentModel | None:
    """The model for ``config`` (read from ``config_dir``), trained by a child process if not cached yet;
    None when that fails (logged)."""
    path = cache_dir / f"intent-{model_fingerprint(config)}.npz"
    command = ("-m", "asr.nlu.training", str(config_dir), str(path))
    return made_once(path, IntentModel.load, command, timeout=TRAIN_TIMEOUT_SECONDS, what="model")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m asr.nlu.training CONFIG_DIR OUTPUT", file=sys.stderr)
        return 2
    config = load_config(Path(argv[0]))
    model, _ = train_model(config, shared_segmenter(config.lexicon.dictionary_words()))
    model.save(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
