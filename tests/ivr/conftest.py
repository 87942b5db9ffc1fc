"""Fixtures for the IVR tests: the shipped flow, real TTS prompts (espeak-ng + sox, cached for the
session), the real NLU analyzer, and in-memory queue, ticket desk and event sink. Calls are ``FakeCall``s
whose time runs a hundred times as fast, so a 6-second menu timeout takes 60 ms."""

from __future__ import annotations

import datetime as dt
import shutil
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asr.nlu import Analyzer
from ivr_flows import (
    FlowExecutor,
    InMemoryQueueGateway,
    PromptRenderer,
    RecordingSink,
    RecordingTicketGateway,
    Revision,
    ScriptedSpeech,
    parse_flow,
)
from ivr_flows.service import SHIPPED_DIR

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# Wednesday 2026-11-25, 10:00 in Shanghai: the line is open.
OPEN = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
MAIN_YAML = (SHIPPED_DIR / "main.yaml").read_text(encoding="utf-8")

MakeExecutor = Callable[..., FlowExecutor]


@pytest.fixture(scope="session")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> PromptRenderer:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox (Debian packages) make the prompts")
    return PromptRenderer(tmp_path_factory.mktemp("prompt-cache"))


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.fixture(scope="session")
def main_flow() -> Revision:
    return Revision("main", 1, parse_flow(MAIN_YAML, "main.yaml"))


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def queues() -> InMemoryQueueGateway:
    return InMemoryQueueGateway()


@pytest.fixture
def tickets() -> RecordingTicketGateway:
    return RecordingTicketGateway()


@pytest.fixture
def make_executor(
    prompts: PromptRenderer,
    analyzer: Analyzer,
    sink: RecordingSink,
    queues: InMemoryQueueGateway,
    tickets: RecordingTicketGateway,
    tmp_path: Path,
) -> MakeExecutor:
    """``make_executor(speech=ScriptedSpeech([...]), now=..., http=session, ...)``"""

    def make(**overrides: Any) -> FlowExecutor:
        now = overrides.pop("now", OPEN)
        options: dict[str, Any] = {
            "prompts": prompts,
            "events": sink,
            "analyzer": analyzer,
            "queues": queues,
            "tickets": tickets,
            "speech": ScriptedSpeech([], time_scale=0.01),
            "recordings_dir": tmp_path / "recordings",
            "clock": lambda: now,
        }
        options.update(overrides)
        return FlowExecutor(**options)

    return make
