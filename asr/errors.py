"""What can go wrong with speech recognition, as ``core.errors`` kinds with stable codes."""

from __future__ import annotations

from core.errors import Invalid, Unavailable


class AudioFormatError(Invalid):
    """The caller declared or sent audio a stream does not take (rate, sample width, partial samples)."""

    code = "asr_audio_format"
    title = "Unsupported audio format"


class StreamClosed(Invalid):
    """Audio was fed to a stream after ``finish()``."""

    code = "asr_stream_closed"
    title = "Recognition stream already finished"


class ModelMissing(Unavailable):
    """No model is installed for the language; the message names the command that installs one."""

    code = "asr_model_missing"
    title = "Speech model not installed"


class RecognitionFailed(Unavailable):
    """The engine failed while decoding (a crashed worker, a corrupt model); the stream is over."""

    code = "asr_failed"
    title = "Speech recognition failed"


class FetchError(Unavailable):
    """Downloading or installing a model failed; nothing was installed."""

    code = "asr_fetch_failed"
    title = "Model download failed"


class ChecksumMismatch(FetchError):
    """The downloaded archive is not the pinned one; it was deleted, nothing was installed."""

    code = "asr_checksum_mismatch"
    title = "Model checksum mismatch"
