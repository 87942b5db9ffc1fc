"""Where the NLU keeps what it derives once per machine (the intent model, jieba's compact dictionary), and
how: made by a child process, then read by every process that needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from core.child import failure_line
from core.log import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/huiliu/nlu`` (``~/.cache/huiliu/nlu``): derived files, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huiliu" / "nlu"


def made_once(
    path: Path, load: Callable[[Path], T], command: Sequence[str], *, timeout: float, what: str
) -> T | None:
    """``load(path)``; when the file is missing or unreadable (damaged, another format), ``command`` — a
    child process that writes it — runs first. None when that fails too: logged as ``nlu.<what>_…``, and
    the caller makes the thing in its own process."""
    try:
        return load(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning(f"nlu.{what}_cache_unreadable", path=str(path), error=str(exc))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, *command],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        return load(path)
    except subprocess.CalledProcessError as exc:
        log.warning(
            f"nlu.{what}_child_failed", path=str(path), error=failure_line(exc.stderr, exc.returncode)
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning(f"nlu.{what}_cache_failed", path=str(path), error=str(exc))
    return None
