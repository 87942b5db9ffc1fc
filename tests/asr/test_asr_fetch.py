"""`huiliu asr fetch`: the pinned archive is installed whole, anything else leaves nothing behind.

A loopback HTTP server serves a small zip built here, shaped like a vosk model; its sha256 is injected
through ``fetch_model(model=...)``, or for the command line swapped into ``OFFICIAL_VOSK_MODELS`` for the
length of one test (monkeypatch) — the real pins are never changed.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import io
import logging
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import asr.fetch as fetch_module
from asr import ChecksumMismatch, FetchError, ModelCatalog, ModelMissing
from asr.fetch import fetch_model
from asr.models import MARKER, OFFICIAL_VOSK_MODELS, OfficialModel
from core.cli import main as huiliu

NAME = "vosk-model-small-cn-0.22"


def model_zip(name: str = NAME, extra: dict[str, bytes] | None = None) -> bytes:
    files = {
        f"{name}/am/final.mdl": b"acoustic model",
        f"{name}/conf/mfcc.conf": b"--use-energy=false\n",
        f"{name}/conf/model.conf": b"--beam=10.0\n",
        f"{name}/graph/HCLr.fst": b"hclr",
        f"{name}/graph/Gr.fst": b"gr",
        f"{name}/ivector/final.ie": b"ivector",
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


@dataclass
class Served:
    body: bytes = b""
    status: int = 200
    declared_length: int | None = None  # a Content-Length larger than the body: a truncated download
    requests: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """``huiliu`` run in-process configures logging onto this test's captured stderr, which pytest closes
    after the test: later tests' log records would fail ("--- Logging error ---"). Put logging back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            self.send_response(served.status)
            self.send_header("Content-Length", str(served.declared_length or len(served.body)))
            self.end_headers()
            self.wfile.write(served.body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            return None

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


def pinned(url: str, body: bytes) -> OfficialModel:
    return OfficialModel("zh", NAME, f"{url}/{NAME}.zip", hashlib.sha256(body).hexdigest())


def leftovers(model_dir: Path) -> list[str]:
    return sorted(path.name for path in model_dir.iterdir()) if model_dir.exists() else []


def test_fetch_installs_the_pinned_archive_and_the_catalog_finds_it(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, served = server
    served.body = model_zip()
    progress: list[tuple[int, int | None]] = []
    path = fetch_model("zh", tmp_path, model=pinned(url, served.body), progress=lambda *p: progress.append(p))

    assert path == tmp_path / NAME
    assert (path / "am" / "final.mdl").read_bytes() == b"acoustic model"
    assert (path / MARKER).is_file()
    assert leftovers(tmp_path) == [NAME]  # no staging directory, no archive
    assert progress[-1] == (len(served.body), len(served.body))
    assert ModelCatalog(tmp_path).vosk_path("zh") == path

    fetch_model("zh", tmp_path, model=pinned(url, served.body))
    assert len(served.requests) == 1  # installed already: not downloaded again


def test_wrong_checksum_is_refused_and_nothing_is_installed(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, served = server
    served.body = model_zip()
    wrong = OfficialModel("zh", NAME, f"{url}/{NAME}.zip", "0" * 64)
    with pytest.raises(ChecksumMismatch, match="is not the pinned 0000") as caught:
        fetch_model("zh", tmp_path, model=wrong)
    assert caught.value.extra["actual"] == hashlib.sha256(served.body).hexdigest()
    assert leftovers(tmp_path) == []
    with pytest.raises(ModelMissing, match="huiliu asr fetch zh"):
        ModelCatalog(tmp_path).vosk_path("zh")


def test_truncated_download_is_refused_and_nothing_is_installed(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, served = server
    whole = model_zip()
    served.body = whole[: len(whole) // 2]
    served.declared_length = len(whole)
    with pytest.raises(FetchError, match=r"broke off after|truncated"):
        fetch_model("zh", tmp_path, model=pinned(url, whole))
    assert leftovers(tmp_path) == []


def test_a_failed_update_keeps_the_installed_model(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    served.body = model_zip()
    fetch_model("zh", tmp_path, model=pinned(url, served.body))
    newer = model_zip(extra={f"{NAME}/README": b"newer"})
    with pytest.raises(ChecksumMismatch):
        fetch_model(
            "zh", tmp_path, model=OfficialModel("zh", NAME, f"{url}/x.zip", hashlib.sha256(newer).hexdigest())
        )
    assert leftovers(tmp_path) == [NAME]
    assert (tmp_path / NAME / "am" / "final.mdl").is_file()


def test_archive_escaping_its_directory_is_refused(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    served.body = model_zip(extra={"../../evil.txt": b"owned"})
    with pytest.raises(FetchError, match="unsafe entry"):
        fetch_model("zh", tmp_path / "models", model=pinned(url, served.body))
    assert not (tmp_path / "evil.txt").exists()
    assert leftovers(tmp_path / "models") == []


def test_archive_that_is_not_a_model_is_refused(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{NAME}/README", b"just a readme")
    served.body = buffer.getvalue()
    with pytest.raises(FetchError, match="does not hold a vosk model"):
        fetch_model("zh", tmp_path, model=pinned(url, served.body))
    assert leftovers(tmp_path) == []


def test_http_error_is_reported(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    served.status, served.body = 404, b"not here"
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_model("zh", tmp_path, model=pinned(url, b"x"))
    assert leftovers(tmp_path) == []


def test_staging_left_by_a_killed_fetch_is_cleaned(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    served.body = model_zip()
    stale = tmp_path / f".fetch-{NAME}-999999999"
    (stale / "unpacked").mkdir(parents=True)
    fetch_model("zh", tmp_path, model=pinned(url, served.body))
    assert leftovers(tmp_path) == [NAME]


def test_the_real_pins_are_the_ones_in_the_design() -> None:
    assert (
        OFFICIAL_VOSK_MODELS["zh"].sha256
        == "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"
    )
    assert (
        OFFICIAL_VOSK_MODELS["en"].sha256
        == "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498"
    )
    assert OFFICIAL_VOSK_MODELS["zh"].url.endswith("/vosk-model-small-cn-0.22.zip")
    assert OFFICIAL_VOSK_MODELS["en"].url.endswith("/vosk-model-small-en-us-0.15.zip")


def test_missing_model_names_the_command_to_run(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as caught:
        ModelCatalog(tmp_path / "models").vosk_path("en")
    assert "run `huiliu asr fetch en`" in caught.value.detail
    assert caught.value.extra["command"] == "huiliu asr fetch en"


def test_cli_lists_models_and_refuses_unknown_languages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HUILIU_ASR_MODEL_DIR", str(tmp_path))
    assert huiliu(["asr", "models"]) == 0
    assert "vosk zh: missing — no vosk model for 'zh': run `huiliu asr fetch zh`" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        huiliu(["asr", "fetch", "fr"])
    assert caught.value.code == 2


def test_a_directory_the_fetch_did_not_install_is_refused_and_left_alone(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, served = server
    served.body = model_zip()
    own = tmp_path / NAME
    own.mkdir()
    (own / "notes.txt").write_text("unpacked by hand")
    with pytest.raises(
        FetchError, match=rf"{NAME} already exists and was not installed by `huiliu asr fetch`"
    ):
        fetch_model("zh", tmp_path, model=pinned(url, served.body))
    assert (own / "notes.txt").read_text() == "unpacked by hand"
    assert leftovers(tmp_path) == [NAME] and served.requests == []  # refused before downloading


def test_a_full_disk_while_unpacking_is_a_precise_error_and_leaves_nothing(
    server: tuple[str, Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    served.body = model_zip()

    def disk_full(self: zipfile.ZipFile, path: object = None, *args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(zipfile.ZipFile, "extractall", disk_full)
    with pytest.raises(FetchError, match=r"cannot unpack download\.zip into .*: No space left on device"):
        fetch_model("zh", tmp_path, model=pinned(url, served.body))
    assert leftovers(tmp_path) == []


def test_a_model_dir_that_cannot_be_created_is_a_precise_error(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, served = server
    served.body = model_zip()
    (tmp_path / "models").write_text("a file where the directory should be")
    with pytest.raises(FetchError, match=r"cannot create the model directory .*models/vosk: Not a directory"):
        fetch_model("zh", tmp_path / "models" / "vosk", model=pinned(url, served.body))


def test_an_update_that_cannot_be_moved_into_place_keeps_the_installed_model(
    server: tuple[str, Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    served.body = model_zip()
    fetch_model("zh", tmp_path, model=pinned(url, served.body))
    served.body = model_zip(extra={f"{NAME}/README": b"newer"})
    rename = os.rename

    def refuse_new_model(source: Path, destination: Path) -> None:
        if Path(source).parent.name == "unpacked":
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        rename(source, destination)

    monkeypatch.setattr(fetch_module.os, "rename", refuse_new_model)
    with pytest.raises(
        FetchError,
        match=r"cannot move the new model into .*: Invalid cross-device link; .* installed before is kept",
    ):
        fetch_model("zh", tmp_path, model=pinned(url, served.body))
    assert leftovers(tmp_path) == [NAME]
    assert not (tmp_path / NAME / "README").exists() and (tmp_path / NAME / MARKER).is_file()


def test_cli_fetch_shows_progress_on_stderr_and_exits_0_then_1_on_a_bad_checksum(
    server: tuple[str, Served],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, served = server
    served.body = model_zip()
    monkeypatch.setenv("HUILIU_ASR_MODEL_DIR", str(tmp_path / "good"))
    monkeypatch.setitem(OFFICIAL_VOSK_MODELS, "zh", pinned(url, served.body))
    assert huiliu(["asr", "fetch", "zh"]) == 0
    out, err = capsys.readouterr()
    assert f"{NAME} [{'#' * 30}] 100%" in err  # not a terminal: one line per 10 %, the last one full
    assert out.startswith(f"installed {NAME} (sha256 {pinned(url, served.body).sha256[:12]}")
    assert ModelCatalog(tmp_path / "good").vosk_path("zh") == tmp_path / "good" / NAME

    monkeypatch.setenv("HUILIU_ASR_MODEL_DIR", str(tmp_path / "bad"))
    monkeypatch.setitem(OFFICIAL_VOSK_MODELS, "zh", OfficialModel("zh", NAME, f"{url}/{NAME}.zip", "0" * 64))
    assert huiliu(["asr", "fetch", "zh"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == (
        f"huiliu asr fetch: {url}/{NAME}.zip: sha256 {hashlib.sha256(served.body).hexdigest()} is not the "
        f"pinned {'0' * 64}; the archive was deleted and nothing was installed"
    )
    assert leftovers(tmp_path / "bad") == []
