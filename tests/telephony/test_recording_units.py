"""How a finished recording is judged (``telephony.calls``): the audio a WAV really holds, and whether it
holds what the recorder ran for. The full-disk case with a real filesystem is in test_recording_faults."""

from __future__ import annotations

import wave
from pathlib import Path

from telephony import RecordingError
from telephony.calls import _storage_check, _wav_seconds


def write_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(int(seconds * 16000) * 2))
    return path


def test_a_whole_recording_is_fine(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "whole.wav", 2.0)
    assert _wav_seconds(path) == 2.0
    assert _storage_check(path, 2.0, 2.3, "") == (None, "")


def test_a_short_file_with_space_left_is_incomplete_and_says_how_much_is_missing(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", 0.5)
    error, detail = _storage_check(path, _wav_seconds(path), 2.0, "")
    assert error is RecordingError.incomplete
    assert detail.startswith("kept 0.5 s of 2 s recorded; ") and "bytes free" in detail


def test_a_recorder_that_could_not_start_is_reported_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "never.wav"
    error, detail = _storage_check(path, _wav_seconds(path), 2.0, "Permission denied")
    assert error is RecordingError.recorder_failed and detail.startswith("Permission denied; ")


def test_a_header_claiming_more_than_the_file_holds_counts_only_what_is_there(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "cut.wav", 2.0)
    with path.open("r+b") as wav:
        wav.truncate(44 + 16000 * 2 // 4)  # a quarter of a second reached the disk
    assert _wav_seconds(path) == 0.25
    assert _wav_seconds(tmp_path / "missing.wav") == 0.0
    (tmp_path / "empty.wav").touch()
    assert _wav_seconds(tmp_path / "empty.wav") == 0.0
