"""IVR prompt benchmark: how long a prompt takes to render cold (pypinyin + espeak-ng + sox) and to serve
from the cache, for Mandarin and English, and what pre-rendering the shipped flow costs.

    .venv/bin/python bench/ivr_prompts.py            # 5 prompts per language, fresh cache in a temp dir
    .venv/bin/python bench/ivr_prompts.py --repeat 20

Cold: a text not in the cache (each round uses a new cache directory). Cached, same process: the renderer
has seen the file (no system call). Cached, new process: a fresh renderer finds the file on disk (one stat
in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import bench  # noqa: F401  (first: run as a script, it unshadows the telephony package)

# isort: split

from ivr_flows import PromptRenderer, parse_flow
from ivr_flows.service import SHIPPED_DIR

TEXTS = {
    "zh": [
        "您好，欢迎致电汇流客服。",
        "售后服务请按1，查询订单请按2，投诉请按3，人工服务请按0。",
        "请简单说出您的问题，比如：我要退货，订单号一二三四五。",
        "您的订单{n}已发货，预计十一月二十八日送达。",
        "所有专员正忙，请稍候。",
    ],
    "en": [
        "Welcome to Huiliu customer service.",
        "For after-sales service press 1, for order status press 2, for complaints press 3.",
        "Please tell us briefly what you need.",
        "Your order {n} has shipped and should arrive on November 28.",
        "All our agents are busy. Please hold.",
    ],
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(values) * 1000:8.2f} {p95 * 1000:8.2f}"


async def timed(make: object) -> float:
    started = time.perf_counter()
    await make  # type: ignore[misc]
    return time.perf_counter() - started


async def main(repeat: int) -> None:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        # the process's first Mandarin prompt also loads pypinyin's dictionaries
        first = await timed(PromptRenderer(cache / "first").speak("您好。", "zh"))
        rows.append(("zh first in process (pypinyin load)", f"{first * 1000:8.2f} {'':>8}"))
        for language, texts in TEXTS.items():
            cold, warm, fresh = [], [], []
            for round_ in range(repeat):
                directory = cache / f"{language}-{round_}"  # a new cache each round: every render is cold
                renderer = PromptRenderer(directory)
                for text in texts:
                    spoken = text.replace("{n}", "12345")
                    cold.append(await timed(renderer.speak(spoken, language)))
                    warm.append(await timed(renderer.speak(spoken, language)))
                    fresh.append(await timed(PromptRenderer(directory).speak(spoken, language)))
            rows += [
                (f"{language} cold (render)", ms(cold)),
                (f"{language} cached, same process", ms(warm)),
                (f"{language} cached, new process", ms(fresh)),
            ]
        flow = parse_flow((SHIPPED_DIR / "main.yaml").read_text(encoding="utf-8"))
        parts = list(flow.prompt_parts())
        renderer = PromptRenderer(cache / "flow")
        started = time.perf_counter()
        rendered = await renderer.prepare(parts, flow.language)
        prepare_seconds = time.perf_counter() - started
        size = sum(file.stat().st_size for file in (cache / "flow").glob("*.wav"))

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"format: 16 kHz mono s16 WAV; {repeat} × {len(TEXTS['zh'])} prompts per language\n")
    print(f"{'what':34} {'p50 ms':>8} {'p95 ms':>8}")
    for what, figures in rows:
        print(f"{what:34} {figures}")
    print(
        f"\npre-render shipped main.yaml: {rendered} prompts in {prepare_seconds:.2f} s, {size / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    asyncio.run(main(parser.parse_args().repeat))
