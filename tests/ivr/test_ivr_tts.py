"""Prompts: Mandarin and English speech of plausible length and loudness, cached, overridable by a
recording, joined into one file when a prompt has several parts."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr_flows import PromptRenderer
from ivr_flows.nodes import PromptPart
from ivr_flows.tts import pinyin_chunks, to_pinyin

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="needs espeak-ng and sox"
)


def wav_files(directory: Path) -> int:
    return len(list(directory.glob("*.wav")))


def measure(path: Path) -> tuple[int, float, float]:
    """(sample rate, seconds, RMS as a fraction of full scale) of a mono 16-bit WAV."""
    with wave.open(str(path), "rb") as audio:
        assert (audio.getnchannels(), audio.getsampwidth()) == (1, 2)
        rate = audio.getframerate()
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2").astype(np.float64)
    return rate, len(samples) / rate, float(np.sqrt(np.mean(samples**2)) / 32768)


@pytest.mark.parametrize(
    ("text", "language", "shortest", "longest"),
    [
        ("您好，欢迎致电汇流客服。售后服务请按1。", "zh", 2.0, 8.0),
        ("Welcome to Huiliu customer service. For after-sales, press 1.", "en", 2.0, 8.0),
    ],
)
async def test_prompt_is_audible_speech_of_plausible_length(
    tmp_path: Path, text: str, language: str, shortest: float, longest: float
) -> None:
    renderer = PromptRenderer(tmp_path)
    rate, seconds, rms = measure(await renderer.speak(text, language))
    assert rate == 16_000
    assert shortest <= seconds <= longest
    assert rms > 0.03, "normalised speech is far above silence"


async def test_a_cached_prompt_is_not_rendered_again(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)
    started = time.perf_counter()
    first = await renderer.speak("订单查询请按2。", "zh")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    second = await PromptRenderer(tmp_path).speak("订单查询请按2。", "zh")  # a new process, same cache
    cached = time.perf_counter() - started
    assert first == second and first.parent == tmp_path
    assert cached < cold
    assert wav_files(tmp_path) == 1


async def test_concurrent_requests_for_one_prompt_render_it_once(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)
    paths = await asyncio.gather(*(renderer.speak("请稍候。", "zh") for _ in range(5)))
    assert len(set(paths)) == 1 and wav_files(tmp_path) == 1


async def test_processes_sharing_a_cold_cache_render_each_prompt_once(tmp_path: Path) -> None:
    # A pool of telephony workers starting together on an empty cache: each worker is its own renderer
    # (nothing shared in memory); espeak-ng must still run once per prompt, not once per worker.
    runs = tmp_path / "espeak-runs"
    espeak = tmp_path / "espeak-counting"
    espeak.write_text(f'#!/bin/sh\necho run >> {runs}\nexec {shutil.which("espeak-ng")} "$@"\n')
    espeak.chmod(0o755)
    cache = tmp_path / "cache"
    workers = [PromptRenderer(cache, espeak=str(espeak)) for _ in range(4)]
    texts = ["您好，欢迎致电汇流客服。", "请稍候。"]
    paths = await asyncio.gather(*(worker.speak(text, "zh") for worker in workers for text in texts))
    assert len(set(paths)) == 2 and wav_files(cache) == 2
    assert len(runs.read_text().splitlines()) == 2, "one espeak-ng run per prompt"
    assert all(measure(path)[1] > 0.5 for path in paths)


async def test_a_recorded_prompt_overrides_tts(tmp_path: Path) -> None:
    prompts_dir = tmp_path / "prompts"
    prompts_dir.mkdir()
    renderer = PromptRenderer(tmp_path / "cache", prompts_dir)
    key = renderer.key("您好，欢迎致电汇流客服。", "zh")
    with wave.open(str(prompts_dir / f"{key}.wav"), "wb") as recording:  # a studio file at 8 kHz
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(8000)
        recording.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype("<i2").tobytes())
    rate, seconds, _ = measure(await renderer.speak("您好，欢迎致电汇流客服。", "zh"))
    assert rate == 16_000 and seconds == pytest.approx(1.0, abs=0.01)  # the recording, converted


async def test_a_prompt_of_several_parts_is_one_file(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)
    parts = (PromptPart(say="售后服务请按1。"), PromptPart(say="For English, press 9.", language="en"))
    joined = await renderer.render(parts, "zh")
    zh = await renderer.speak("售后服务请按1。", "zh")
    en = await renderer.speak("For English, press 9.", "en")
    assert measure(joined)[1] == pytest.approx(measure(zh)[1] + measure(en)[1] + 0.2, abs=0.01)


async def test_per_language_text_follows_the_call_language(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)
    part = (PromptPart(say={"zh": "您好", "en": "Hello"}),)
    assert await renderer.render(part, "en") == await renderer.speak("Hello", "en")
    assert await renderer.render(part, "zh") == await renderer.speak("您好", "zh")


def test_mandarin_is_spoken_as_tone_numbered_pinyin_with_digits_one_by_one() -> None:
    assert to_pinyin("您好，订单号12345，按#号键结束。") == (
        "nin2 hao3, ding4 dan1 hao4 yi1 er4 san1 si4 wu3, an4 jing3 hao4 jian4 jie2 shu4."
    )


async def test_a_flows_static_prompts_are_rendered_ahead(tmp_path: Path) -> None:
    from ivr_flows import parse_flow
    from tests.ivr.conftest import MAIN_YAML

    flow = parse_flow(MAIN_YAML)
    renderer = PromptRenderer(tmp_path)
    rendered = await renderer.prepare(list(flow.prompt_parts()), flow.language)
    dynamic = sum("{" in text for text in MAIN_YAML.splitlines() if "zh:" in text or "en:" in text)
    assert rendered == wav_files(tmp_path) and rendered > 30 and dynamic > 0


def test_a_process_that_does_not_speak_mandarin_yet_has_its_prompts_made_by_a_child(tmp_path: Path) -> None:
    """A telephony worker starting on a cold cache: the flow's Mandarin prompts are made by one child
    process, so the worker never loads pypinyin's dictionaries (~55 MB) for them, and they are the
    prompts this process would have made (sox dithers: the same length and loudness, not the same bytes)."""
    script = (
        "import asyncio, json, sys\n"
        "from pathlib import Path\n"
        "from ivr_flows import PromptRenderer, parse_flow\n"
        "flow = parse_flow(Path('ivr_flows/flows/main.yaml').read_text(encoding='utf-8'))\n"
        "renderer = PromptRenderer(Path(sys.argv[1]))\n"
        "rendered = asyncio.run(renderer.prepare(list(flow.prompt_parts()), flow.language))\n"
        "static = 'pypinyin' in sys.modules\n"
        "spoken = asyncio.run(renderer.speak(sys.argv[2], 'zh'))\n"  # the queue prompt, position 3
        "print(json.dumps({'rendered': rendered, 'pypinyin': static, 'pypinyin_after_variable':\n"
        "    'pypinyin' in sys.modules, 'spoken': str(spoken)}))\n"
    )
    cache = tmp_path / "cache"
    queue_prompt = (
        "您现在排在第3位，预计等待约12分钟。"  # main.yaml: 第{queue_position}位 … 约{queue_wait_minutes}分钟
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(cache), queue_prompt],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["pypinyin"] is False
    assert result["pypinyin_after_variable"] is False, "a prompt with digits in it loaded pypinyin"
    assert result["rendered"] == wav_files(cache) - 1 > 30

    here = PromptRenderer(tmp_path / "here")
    text = "您好，欢迎致电汇流客服。"
    made_by_child = cache / f"{here.key(text, 'zh')}.wav"
    _, seconds, rms = measure(made_by_child)
    _, expected_seconds, expected_rms = measure(asyncio.run(here.speak(text, "zh")))
    assert seconds == expected_seconds and rms == pytest.approx(expected_rms, rel=0.01)
    _, seconds, rms = measure(Path(result["spoken"]))
    _, expected_seconds, expected_rms = measure(asyncio.run(here.speak(queue_prompt, "zh")))
    assert seconds == expected_seconds and rms == pytest.approx(expected_rms, rel=0.01)


def test_hanzi_runs_are_read_as_pypinyin_reads_the_whole_text() -> None:
    """``to_pinyin`` reads text run by run (so a worker can use readings a child made); the chunks are
    pypinyin's own for the whole text, and the characters that make a run are pypinyin's."""
    from pypinyin import Style, lazy_pinyin
    from pypinyin.constants import RE_HANS

    from ivr_flows.tts import _HAN_RUN

    lines = [
        line.strip()
        for path in [*REPO.glob("ivr_flows/**/*.yaml"), *REPO.glob("asr/nlu/data/*.yaml"), REPO / "README.md"]
        for line in path.read_text(encoding="utf-8").splitlines()
        if _HAN_RUN.search(line)
    ]
    lines += ["还有3位，约12分钟", "单号T2026-0042，", "重庆银行行长", "〇一二", "𠀀𪚥 ab3 长", ""]
    assert len(lines) > 200
    for line in lines:
        assert pinyin_chunks(line) == lazy_pinyin(line, style=Style.TONE3, neutral_tone_with_five=True), line
    ours = {code for code in range(0x110000) if _HAN_RUN.fullmatch(chr(code))}
    theirs = {code for code in range(0x110000) if RE_HANS.match(chr(code))}
    assert ours == theirs
