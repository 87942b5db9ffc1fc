"""Where decoders live: one registry per process, used from worker threads or worker processes.

Thread boundary: every function here runs in a worker (a ``ThreadPoolExecutor`` thread, or the single
thread of a worker process) and blocks while it decodes; nothing here may run on the event loop. A stream's
calls are serialised by its ``DecodingStream``, so one decoder is never used by two threads at once; the
registry itself is a dict guarded by the GIL. Models are loaded once per process (``shared_model``) and shared
by every decoder in it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from asr.recognizer import DecoderHandle, RecognitionResult

T = TypeVar("T")


class Decoder(Protocol):
    def accept(self, pcm: bytes) -> list[RecognitionResult]: ...

    def finish(self) -> list[RecognitionResult]: ...


class DecoderSpec(Protocol):
    """Picklable recipe for a decoder (it may be built in another process)."""

    def build(self) -> Decoder: ...


_decoders: dict[str, Decoder] = {}
_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


def shared_model(kind: str, key: str, load: Callable[[], T]) -> T:
    """The process-wide model for ``(kind, key)``, loaded on first use (once, even when threads race)."""
    with _models_lock:
        if (kind, key) not in _models:
            _models[(kind, key)] = load()
        model: T = _models[(kind, key)]
        return model


def loaded_models() -> list[tuple[str, str]]:
    return sorted(_models)


def preload(spec: DecoderSpec) -> None:
    """Build (and drop) a decoder so the model behind it is loaded."""
    spec.build()


def accept(stream_id: str, spec: DecoderSpec, pcm: bytes) -> list[RecognitionResult]:
    decoder = _decoders.get(stream_id)
    if decoder is None:
        decoder = _decoders[stream_id] = spec.build()
    return decoder.accept(pcm)


def finish(stream_id: str, spec: DecoderSpec) -> list[RecognitionResult]:
    decoder = _decoders.pop(stream_id, None) or spec.build()
    return decoder.finish()


def close(stream_id: str) -> None:
    _decoders.pop(stream_id, None)


def open_decoders() -> int:
    return len(_decoders)


class WorkerHandle(DecoderHandle):
    """A stream's decoder inside ``executor`` (a thread pool, or the one process the stream is pinned to)."""

    def __init__(self, executor: concurrent.futures.Executor, stream_id: str, spec: DecoderSpec) -> None:
        self.executor = executor
        self.stream_id = stream_id
        self.spec = spec

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def accept(self, pcm: bytes) -> list[RecognitionResult]:
        return await self._call(accept, self.stream_id, self.spec, pcm)

    async def finish(self) -> list[RecognitionResult]:
        return await self._call(finish, self.stream_id, self.spec)

    async def close(self) -> None:
        await self._call(close, self.stream_id)
