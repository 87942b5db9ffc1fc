"""Fixtures for the ASR tests: speech made by espeak-ng and sox (Debian packages)."""

from __future__ import annotations

import shutil

import pytest

from tests.asr.speech import Speak, speaker


@pytest.fixture(scope="session")
def speak(tmp_path_factory: pytest.TempPathFactory) -> Speak:
    """``speak(text, voice="ko+f2", speed=150)`` → 16 kHz s16le mono PCM (cached for the session)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox (Debian packages) are needed to make test speech")
    return speaker(tmp_path_factory.mktemp("speech"))
