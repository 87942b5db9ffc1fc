"""Intent benchmark: accuracy of ``asr.nlu`` on the hand-labelled evaluation set, and its speed.

    .venv/bin/python bench/intent.py                 # the packaged config and asr/nlu/data/eval.yaml
    .venv/bin/python bench/intent.py --errors        # also list every misclassified utterance
    .venv/bin/python bench/intent.py --config-dir DIR --eval FILE

Prints the machine, load time (imports, then the first Analyzer: jieba's dictionary and model training) and
memory, accuracy overall / per language / clean vs ASR-style text, the unknown rates, per-intent precision,
recall and F1, a confusion table (rows: the label, columns: the answer), and analyze() latency p50/p95 over
``--repeat`` passes of the evaluation set plus the cost of a 10 MB input (cut to ``max_chars``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import bench  # noqa: F401  (first: run as a script, it unshadows the asr package)

# isort: split

IMPORT_STARTED = time.perf_counter()
from asr.nlu import Analyzer  # noqa: E402  (timed: the import is part of the load cost)
from asr.nlu.config import DEFAULT_CONFIG_DIR  # noqa: E402
from asr.nlu.evaluation import EvalReport, evaluate, load_eval_set  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - IMPORT_STARTED
ACCURACY_TARGET = 0.90
PACKAGES = ("jieba", "scikit-learn", "pypinyin", "phonenumbers", "numpy", "scipy", "pydantic")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def short_names(labels: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for label in labels:
        name = label[:3]
        suffix = 2
        while name in names.values():
            name, suffix = f"{label[:2]}{suffix}", suffix + 1
        names[label] = name
    return names


def print_machine() -> None:
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {cpu_model()} · {os.cpu_count()} cores · load average {load[0]:.2f} {load[1]:.2f}")
    print(f"         {platform.system()} {platform.release()} · Python {platform.python_version()}")
    print(f"         {', '.join(versions)}")


def print_accuracy(report: EvalReport) -> None:
    print("\naccuracy                         utterances   accuracy")
    rows: list[tuple[str, str | None, bool | None]] = [
        ("overall", None, None),
        ("Chinese (zh)", "zh", None),
        ("English (en)", "en", None),
        ("clean text", None, False),
        ("ASR-style text", None, True),
        ("Chinese ASR-style", "zh", True),
        ("English ASR-style", "en", True),
    ]
    for name, language, asr_style in rows:
        count = report.count(language=language, asr_style=asr_style)
        accuracy = report.accuracy(language=language, asr_style=asr_style)
        print(f"  {name:<30} {count:>10}   {accuracy:8.1%}")
    verdict = "meets" if report.accuracy() >= ACCURACY_TARGET else "BELOW"
    print(f"  target ≥ {ACCURACY_TARGET:.0%} overall: {verdict}")
    print(f"  answered unknown (all)          {report.unknown_rate():8.1%}")
    print(f"  in-scope answered unknown       {report.false_unknown_rate():8.1%}   (missed, not guessed)")
    print(
        f"  out-of-scope given an intent    {report.false_accept_rate():8.1%}   (a guess: the costly error)"
    )


def print_per_intent(report: EvalReport) -> None:
    print("\nintent              precision   recall       F1   support")
    for label, scores in report.per_intent().items():
        print(
            f"  {label:<18} {scores.precision:8.1%} {scores.recall:8.1%} {scores.f1:8.1%}"
            f"   {scores.support:>7}"
        )


def print_confusion(report: EvalReport) -> None:
    labels = report.labels()
    names = short_names(labels)
    confusion = report.confusion()
    print("\nconfusion (rows: label, columns: answer; · = 0)")
    print("  " + " " * 18 + "".join(f"{names[label]:>5}" for label in labels))
    for truth in labels:
        cells = "".join(f"{confusion[truth, guess] or '·':>5}" for guess in labels)
        print(f"  {truth:<18}{cells}")
    print("  columns: " + ", ".join(f"{names[label]}={label}" for label in labels))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR)
    parser.add_argument("--eval", type=Path, default=None, help="default: eval.yaml in the config dir")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the eval set for latency")
    parser.add_argument("--errors", action="store_true", help="list misclassified utterances")
    args = parser.parse_args()

    print_machine()
    rss_before = rss_mb()
    started = time.perf_counter()
    analyzer = Analyzer(args.config_dir)
    first_load = time.perf_counter() - started
    started = time.perf_counter()
    Analyzer(args.config_dir)
    second_load = time.perf_counter() - started
    examples = len(analyzer.config.training_examples())
    print(f"\nload: imports {IMPORT_SECONDS:.2f} s · first Analyzer {first_load:.2f} s (jieba + training on")
    print(f"      {examples} examples) · another Analyzer in the same process {second_load:.2f} s")
    print(f"      RSS {rss_before:.0f} MB after the imports, {rss_mb():.0f} MB with both analyzers loaded")

    utterances = load_eval_set(args.eval or args.config_dir / "eval.yaml")
    report = evaluate(analyzer, utterances)
    for _ in range(max(0, args.repeat - 1)):
        report.latencies_ms += evaluate(analyzer, utterances).latencies_ms

    print_accuracy(report)
    print_per_intent(report)
    print_confusion(report)

    unit = "我要退货，订单号 12345。"
    huge = unit * (10 * 1024 * 1024 // len(unit.encode()))  # 10 MB of UTF-8
    started = time.perf_counter()
    huge_result = analyzer.analyze(huge)
    huge_ms = (time.perf_counter() - started) * 1000
    latencies = report.latencies_ms
    print("\nlatency of analyze()                    p50        p95        max")
    print(
        f"  eval utterances ({len(latencies)} calls)    {percentile(latencies, 0.5):7.2f} ms "
        f"{percentile(latencies, 0.95):7.2f} ms {max(latencies):7.2f} ms"
    )
    print(
        f"  {len(huge.encode()) / 2**20:.1f} MB text, cut to {analyzer.config.settings.max_chars} chars "
        f"(truncated={huge_result.truncated}): {huge_ms:.1f} ms, intent {huge_result.intent}"
    )
    print(f"  mean {statistics.fmean(latencies):.2f} ms")

    if args.errors:
        print("\nmisclassified")
        for item, guess in report.errors():
            style = " (ASR)" if item.asr_style else ""
            print(f"  [{item.language}{style}] {item.intent} → {guess}: {item.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
