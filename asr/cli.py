"""``huiliu asr fetch zh|en`` and ``huiliu asr models`` (hooked into ``core.cli``)."""

from __future__ import annotations

import argparse
import sys

from asr.errors import FetchError, ModelMissing
from asr.fetch import ProgressBar, fetch_model, installed
from asr.models import OFFICIAL_VOSK_MODELS, PACKAGED_VOSK_MODELS, ModelCatalog
from core.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    asr = commands.add_parser("asr", help="speech recognition models")
    actions = asr.add_subparsers(dest="asr_command", required=True)
    fetch = actions.add_parser(
        "fetch", help="download the official small vosk model (sha256-checked) into HUILIU_ASR_MODEL_DIR"
    )
    fetch.add_argument("language", choices=sorted(OFFICIAL_VOSK_MODELS))
    actions.add_parser("models", help="list the speech models this machine has")


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.asr_command == "fetch":
        return _fetch(settings, args.language)
    return _models(settings)


def _fetch(settings: Settings, language: str) -> int:
    model = OFFICIAL_VOSK_MODELS[language]
    if installed(model, settings.asr_model_dir):
        print(f"{model.name} is already installed in {settings.asr_model_dir}")
        return 0
    bar = ProgressBar(model.name)
    try:
        path = fetch_model(language, settings.asr_model_dir, progress=bar)
    except FetchError as exc:
        bar.done()
        print(f"huiliu asr fetch: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.done()
        print("huiliu asr fetch: interrupted; nothing was installed", file=sys.stderr)
        return 130
    bar.done()
    print(f"installed {model.name} (sha256 {model.sha256[:12]}…) in {path}")
    return 0


def _models(settings: Settings) -> int:
    catalog = ModelCatalog(settings.asr_model_dir, settings.asr_whisper_model)
    for language in sorted({*OFFICIAL_VOSK_MODELS, *PACKAGED_VOSK_MODELS}):
        try:
            where = str(catalog.vosk_path(language))
        except ModelMissing as exc:
            where = f"missing — {exc.detail}"
        print(f"vosk {language}: {where}")
    source = catalog.whisper_source()
    if source is None:
        print("whisper zh/en: missing")
    else:
        print(f"whisper zh/en: {source.directory or source.name + ' (packaged)'}")
    return 0
