"""Where decoders live: one registry per process, used from worker threads or worker processes.

Thread boundary: every function here runs in a worker (a ``ThreadPoolExecutor`` thread, or the single
thread of a worker process) and blocks while it decodes; nothing here may run on the event loop. A stream's
calls are serialised by its ``DecodingStream``, so one decoder is never used by two threads at once; the
registry itself is a dict guarded by the GIL. Models are loaded once per process (``shared_model``) and shared
by every decoder in it; engine state that is costly to build and safe to reuse (vosk's recognizers, whose
decoding graph warms up as it decodes) waits between streams in a per-process pool (``borrow``/``give_back``).
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

    def close(self) -> None:
        """The stream is over (finished or abandoned): release what the decoder holds."""


class DecoderSpec(Protocol):
    """Picklable recipe for a decoder (it may be built in another process)."""

    def build(self) -> Decoder: ...


_decoders: dict[str, Decoder] = {}
_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()
_idle: dict[tuple[str, str], list[Any]] = {}
_idle_lock = threading.Lock()


def shared_model(kind: str, key: str, load: Callable[[], T]) -> T:
    """The process-wide model for ``(kind, key)``, loaded on first use (once, even when threads race)."""
    with _models_lock:
        if (kind, key) not in _models:
            _models[(kind, key)] = load()
        model: T = _models[(kind, key)]
        return model


def loaded_models() -> list[tuple[str, str]]:
    return sorted(_models)


def borrow(kind: str, key: str) -> Any | None:
    """An idle engine state that a finished stream gave back for ``(kind, key)``, or None."""
    with _idle_lock:
        idle = _idle.get((kind, key))
        return idle.pop() if idle else None


def give_back(kind: str, key: str, state: Any, keep: int) -> None:
    """Keep ``state`` for the next stream of ``(kind, key)``, unless ``keep`` states already wait."""
    with _idle_lock:
        idle = _idle.setdefault((kind, key), [])
        if len(idle) < keep:
            idle.append(state)


def idle_states(kind: str) -> int:
    with _idle_lock:
        return sum(len(idle) for (idle_kind, _), idle in _idle.items() if idle_kind == kind)


def preload(spec: DecoderSpec) -> None:
    """Build (and release) a decoder so the model behind it is loaded."""
    spec.build().close()


def accept(stream_id: str, spec: DecoderSpec, pcm: bytes) -> list[RecognitionResult]:
    decoder = _decoders.get(stream_id)
    if decoder is None:
        decoder = _decoders[stream_id] = spec.build()
    return decoder.accept(pcm)


def finish(stream_id: str, spec: DecoderSpec) -> list[RecognitionResult]:
    decoder = _decoders.pop(stream_id, None) or spec.build()
    try:
        return decoder.finish()
    finally:
        decoder.close()


def close(stream_id: str) -> None:
    decoder = _decoders.pop(stream_id, None)
    if decoder is not None:
        decoder.close()


def open_decoders() -> int:
    return len(_decoders)


class WorkerHandle(DecoderHandle):
    """A stream's decoder inside ``executor`` (a thread pool, or the one process the stream is pinned to)."""

    def __init__(self, executor: concurrent.futures.Executor, stream_id: str, spec: DecoderSpec) -> None:
        self.executor = executor
        self.stream_id = stream_id
        self.spec = spec
        self._in_flight: concurrent.futures.Future[Any] | None = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        self._in_flight = self.executor.submit(function, *args)
        return await asyncio.wrap_future(self._in_flight)

    async def _settled(self) -> None:
        """Wait out a call still running in the worker: cancelling the task that awaited it does not stop
        a worker thread, and the decoder must not be closed under a call that is still using it."""
        if self._in_flight is not None and not self._in_flight.done():
            await asyncio.wait([asyncio.wrap_future(self._in_flight)])

    async def accept(self, pcm: bytes) -> list[RecognitionResult]:
        return await self._call(accept, self.stream_id, self.spec, pcm)

    async def finish(self) -> list[RecognitionResult]:
        return await self._call(finish, self.stream_id, self.spec)

    async def close(self) -> None:
        await self._settled()
        await self._call(close, self.stream_id)
