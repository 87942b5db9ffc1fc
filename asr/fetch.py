"""``huiliu asr fetch``: download an official vosk model, check its pinned sha256, install it atomically.

The archive is downloaded into a staging directory beside the models (same filesystem), hashed while it
arrives, refused unless the digest is the pinned one, unpacked there (refusing paths that escape it) and
checked to be a vosk model. Only then is the directory renamed into place, with a marker file written last
inside it. A refused, truncated or interrupted download, or a full disk, leaves nothing but a staging
directory that is removed on the way out (and by the next fetch, if the process was killed). A directory
in the way that has no marker is someone's own: the fetch refuses to touch it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from asr.errors import ChecksumMismatch, FetchError
from asr.models import MARKER, OFFICIAL_VOSK_MODELS, OfficialModel, is_vosk_model

CHUNK = 1 << 16
STAGING_PREFIX = ".fetch-"

Progress = Callable[[int, int | None], None]


class ProgressBar:
    """A one-line bar on a terminal; a line every 10 % otherwise (logs, CI)."""

    def __init__(self, label: str, out: IO[str] | None = None, width: int = 30) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self.last_drawn = 0.0
        self.last_decile = -1
        self.tty = self.out.isatty()

    def __call__(self, received: int, total: int | None) -> None:
        now = time.monotonic()
        rate = received / max(now - self.started, 1e-6) / 1e6
        size = f"{received / 1e6:.1f}" + (f"/{total / 1e6:.1f}" if total else "") + " MB"
        if total:
            fraction = min(received / total, 1.0)
            bar = "#" * int(fraction * self.width)
            line = f"{self.label} [{bar:<{self.width}}] {fraction:4.0%} {size} {rate:.1f} MB/s"
            decile = int(fraction * 10)
        else:
            line = f"{self.label} {size} {rate:.1f} MB/s"
            decile = int(received // 10_000_000)
        if self.tty:
            if now - self.last_drawn >= 0.1 or (total and received >= total):
                self.out.write("\r" + line)
                self.out.flush()
                self.last_drawn = now
        elif decile != self.last_decile:
            self.out.write(line + "\n")
            self.out.flush()
            self.last_decile = decile

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def installed(model: OfficialModel, model_dir: Path) -> bool:
    path = model_dir / model.name
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker.get("sha256") == model.sha256 and is_vosk_model(path))


def fetch_model(
    language: str,
    model_dir: Path,
    *,
    model: OfficialModel | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Path:
    """Install the official vosk model for ``language`` into ``model_dir``; returns its directory.

    ``model`` replaces the pinned archive (tests serve their own); an installed model is kept as is, a
    model an earlier fetch installed is replaced, and a directory of that name this command did not
    install is refused (``FetchError``), never deleted. Every failure, the disk's included, is a
    ``FetchError`` saying what could not be done where, and leaves nothing half-installed.
    """
    if model is None:
        if language not in OFFICIAL_VOSK_MODELS:
            choices = ", ".join(OFFICIAL_VOSK_MODELS)
            raise FetchError(f"no official model to fetch for {language!r}: choose one of {choices}")
        model = OFFICIAL_VOSK_MODELS[language]
    target = model_dir / model.name
    if installed(model, model_dir):
        return target
    if target.exists() and not (target / MARKER).is_file():
        raise FetchError(
            f"{target} already exists and was not installed by `huiliu asr fetch` (it has no {MARKER}); "
            "nothing was changed: move it away (or point HUILIU_ASR_MODEL_DIR elsewhere) and run again"
        )
    _disk("create the model directory", model_dir, lambda: model_dir.mkdir(parents=True, exist_ok=True))
    _remove_stale_staging(model_dir, model.name)
    staging = model_dir / f"{STAGING_PREFIX}{model.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    _disk("create the staging directory", staging, staging.mkdir)
    try:
        archive = staging / "download.zip"
        _download(model, archive, progress, timeout)
        root = _unpack(archive, staging / "unpacked", model.name)
        if not is_vosk_model(root):
            raise FetchError(f"{model.url} does not hold a vosk model (no am/final.mdl, conf/, graph/)")
        marker = json.dumps({"name": model.name, "url": model.url, "sha256": model.sha256, "at": time.time()})
        _disk("write the marker", root / MARKER, lambda: (root / MARKER).write_text(marker))
        _move_into_place(root, target, staging / "previous")
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _disk(action: str, path: Path, operation: Callable[[], object]) -> None:
    """Run a filesystem ``operation``; an ``OSError`` becomes a ``FetchError`` naming the action and path."""
    try:
        operation()
    except OSError as exc:
        raise FetchError(f"cannot {action} {path}: {exc.strerror or exc}; nothing was installed") from exc


def _move_into_place(root: Path, target: Path, previous: Path) -> None:
    """Swap the unpacked model in for the one an earlier fetch installed, which comes back if that fails."""
    had_previous = target.exists()
    if had_previous:
        _disk("move the previous model aside from", target, lambda: os.rename(target, previous))
    try:
        os.rename(root, target)
    except OSError as exc:
        if had_previous:
            os.rename(previous, target)
        kept = "; the model installed before is kept" if had_previous else ""
        raise FetchError(
            f"cannot move the new model into {target}: {exc.strerror or exc}; nothing was installed{kept}"
        ) from exc


def _download(model: OfficialModel, archive: Path, progress: Progress | None, timeout: float) -> None:
    digest = hashlib.sha256()
    received = 0
    request = urllib.request.Request(model.url, headers={"User-Agent": "huiliu-asr-fetch"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{model.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{model.url}: download failed: {getattr(exc, 'reason', exc)}") from None
    try:
        out = archive.open("wb")
    except OSError as exc:
        response.close()
        raise FetchError(f"cannot write the download to {archive}: {exc.strerror or exc}") from None
    with response, out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        while True:
            try:
                chunk = response.read(CHUNK)
            except OSError as exc:
                raise FetchError(f"{model.url}: download failed after {received} bytes: {exc}") from None
            except Exception as exc:  # http.client.IncompleteRead and friends: the connection ended early
                raise FetchError(f"{model.url}: download broke off after {received} bytes: {exc!r}") from None
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as exc:
                raise FetchError(
                    f"cannot write the download to {archive} after {received} bytes: {exc.strerror or exc}"
                ) from None
            digest.update(chunk)
            received += len(chunk)
            if progress is not None:
                progress(received, total)
    if total is not None and received != total:
        raise FetchError(f"{model.url}: download truncated: got {received} of {total} bytes")
    if digest.hexdigest() != model.sha256:
        raise ChecksumMismatch(
            f"{model.url}: sha256 {digest.hexdigest()} is not the pinned {model.sha256}; "
            "the archive was deleted and nothing was installed",
            expected=model.sha256,
            actual=digest.hexdigest(),
        )


def _unpack(archive: Path, destination: Path, name: str) -> Path:
    """Unpack safely; returns the model's root (the archive's top directory ``name``, or the archive root)."""
    _disk("create", destination, destination.mkdir)
    base = destination.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                mode = member.external_attr >> 16
                target = (destination / member.filename).resolve()
                if (
                    stat.S_ISLNK(mode)
                    or not target.is_relative_to(base)
                    or Path(member.filename).is_absolute()
                ):
                    raise FetchError(f"{archive.name}: refusing unsafe entry {member.filename!r}")
            zipped.extractall(destination)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive.name}: not a zip archive: {exc}") from None
    except OSError as exc:  # a full disk, a quota, a read-only mount
        raise FetchError(
            f"cannot unpack {archive.name} into {destination}: {exc.strerror or exc}; nothing was installed"
        ) from None
    entries = [entry for entry in destination.iterdir() if not entry.name.startswith("__MACOSX")]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name == name:
        return entries[0]
    return destination


def _remove_stale_staging(model_dir: Path, name: str) -> None:
    """Staging directories left by a fetch that was killed (its process is gone)."""
    for leftover in model_dir.glob(f"{STAGING_PREFIX}{name}-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
