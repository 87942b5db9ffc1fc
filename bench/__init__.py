"""Benchmarks. Run as documented in each file: ``python bench/NAME.py`` or ``python -m bench.NAME``.

Run as a script, a benchmark's own directory comes first on ``sys.path``, so ``bench/asr.py``,
``bench/tickets.py`` and ``bench/telephony.py`` would shadow the packages they measure. Every benchmark
imports this package before those packages; importing it takes that directory off the path again.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if not entry or Path(entry).resolve() != _HERE]
