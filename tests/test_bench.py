"""The benchmarks start the way their own docstrings say: ``python bench/NAME.py`` and ``python -m
bench.NAME``. Run as a script, ``bench/`` comes first on ``sys.path``; ``bench/asr.py``, ``bench/tickets.py``
and ``bench/telephony.py`` then shadowed the packages they measure, and ``bench/intent.py`` died on start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    path
    for path in (REPO / "bench").glob("*.py")
    if not path.name.startswith("_") and 'if __name__ == "__main__"' in path.read_text(encoding="utf-8")
)


def test_every_benchmark_answers_help_as_a_script_and_as_a_module() -> None:
    assert {"asr", "intent", "tickets", "telephony", "desktop"} <= {path.stem for path in SCRIPTS}
    runs = {
        (path.stem, form): subprocess.Popen(
            [sys.executable, *args, "--help"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in SCRIPTS
        for form, args in (("script", [f"bench/{path.name}"]), ("module", ["-m", f"bench.{path.stem}"]))
    }
    failed = {}
    for key, process in runs.items():
        out, err = process.communicate(timeout=180)
        if process.returncode != 0 or "usage:" not in out:
            failed[key] = err.strip().splitlines()[-1:] or out[:200]
    assert failed == {}
