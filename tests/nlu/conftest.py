"""Fixtures for the text-understanding tests: one analyzer on the packaged configuration for the whole
session (loading costs about two seconds: jieba's dictionary and training), and a fixed "now"."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from asr.nlu import Analyzer

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# A Wednesday: 下周一 / "next Monday" is 2026-11-30, 周五 / "Friday" is 2026-11-27.
NOW = dt.datetime(2026, 11, 25, 10, 30, tzinfo=SHANGHAI)


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.fixture
def now() -> dt.datetime:
    return NOW
