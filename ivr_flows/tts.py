"""Prompts as WAV files the telephony bridge plays: text-to-speech with a disk cache, recorded overrides.

Format: 16 kHz, 16-bit signed, mono PCM WAV — what pjsua2's conference bridge runs at by default and what
the ASR taps use, so no resampling happens on a live call.

* Mandarin: hanzi → pypinyin with tone numbers (``ni3 hao3``) → espeak-ng's ``cmn-latn-pinyin`` voice
  (its plain ``cmn`` voice mangles hanzi). Digits are read one by one (按 1, 订单号 12345), as callers
  expect from a phone menu. A telephony worker does not import pypinyin: ``prepare`` has a child process
  make the flow's prompts and read every run of hanzi in it, placeholders' neighbours included, so a
  prompt with a queue position or a ticket number in it is read from those readings.
* English: espeak-ng ``en``; runs of four or more digits are read digit by digit.
* espeak-ng's output is converted by sox to the format above and normalised to -3 dBFS.

Cache: ``<cache_dir>/<key>.wav`` where ``key`` hashes (text, language, voice, format). A recorded prompt at
``<prompts_dir>/<key>.wav`` overrides the synthetic one (its file name is in every ``ivr.step`` of the
prompt, and ``PromptRenderer.key`` computes it); recorded files named in a flow (``file:``) play as they
are, converted to the format above once. A prompt of several parts is joined into one file so barge-in
stops all of it.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import wave
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

from core.child import communicate
from core.files import write_whole
from core.log import get_logger
from ivr_flows.expressions import Template, Value
from ivr_flows.nodes import PromptPart

log = get_logger(__name__)

SAMPLE_RATE = 16_000
VOICES = {"zh": "cmn-latn-pinyin", "en": "en"}
PART_GAP_SECONDS = 0.2
_LOCK_POLL_SECONDS = 0.02

_DIGITS_ZH = dict(zip("0123456789", "ling2 yi1 er4 san1 si4 wu3 liu4 qi1 ba1 jiu3".split(), strict=True))
_KEYS_ZH = {"*": "xing1 hao4", "#": "jing3 hao4"}
_PUNCTUATION_ZH = str.maketrans({"，": ",", "、": ",", "；": ";", "：": ":", "。": ".", "！": "!", "？": "?"})
_LONG_NUMBER = re.compile(r"\d{4,}")


class PromptError(Exception):
    """A prompt could not be made (espeak-ng or sox missing or failing, a recorded file missing)."""


# pypinyin's "has a reading" characters (pypinyin.constants.RE_HANS, 0.55): it cuts text into runs of them
# and the rest, and reads each run on its own (phrases never cross a digit or a space). A test checks the two
# stay equal.
_HANS = (
    "\u3007\ue815-\ue864\ufa18\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a703-\U0002b73f\U0002b740-\U0002b81d\U0002b825-\U0002bf6e"
    "\U0002c029-\U0002ce93\U0002d016\U0002d11b-\U0002ebd9\U0002f80a-\U0002fa1f"
    "\U00030000-\U0003134a\U000300f7-\U00031288\U00030edd\U00030ede\U00031350-\U00032389"
)
_HAN_RUN = re.compile(f"([{_HANS}]+)")


def _mandarin(text: str) -> str:
    return text.replace("#号", "井号").replace("*号", "星号")


def han_runs(text: str) -> list[str]:
    """The runs of characters pypinyin reads in ``text`` (placeholders split them: ``{n}`` is not Han)."""
    return _HAN_RUN.findall(_mandarin(text))


def read_runs(runs: Sequence[str]) -> dict[str, list[str]]:
    """pypinyin's readings of each run (tone-numbered syllables, one per character): what ``to_pinyin``
    looks up instead of importing pypinyin."""
    from pypinyin import Style, lazy_pinyin

    return {run: lazy_pinyin(run, style=Style.TONE3, neutral_tone_with_five=True) for run in runs}


def pinyin_chunks(text: str, known: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """What ``pypinyin.lazy_pinyin(text, style=TONE3, neutral_tone_with_five=True)`` gives, run by run: runs
    of hanzi found in ``known`` (``read_runs``) are not converted again; any other run imports pypinyin (its
    dictionaries take ~55 MB: only processes that speak text nobody read for them pay for them)."""
    chunks: list[str] = []
    for index, piece in enumerate(_HAN_RUN.split(text)):
        if not piece:
            continue
        if index % 2 == 0:  # not hanzi: pypinyin passes it on as one chunk
            chunks.append(piece)
            continue
        reading = known.get(piece) if known is not None else None
        chunks.extend(reading if reading is not None else read_runs([piece])[piece])
    return chunks


def to_pinyin(text: str, known: Mapping[str, Sequence[str]] | None = None) -> str:
    """Mandarin text as tone-numbered pinyin for espeak-ng: ``您好，请按1`` → ``nin2 hao3, qing3 an4 yi1``."""
    words: list[str] = []
    for chunk in pinyin_chunks(_mandarin(text), known):
        if chunk.isascii() and re.fullmatch(r"[a-z]+[1-5]", chunk):
            words.append(chunk)
            continue
        for token in re.findall(r"\d|[*#]|[A-Za-z]+|[^\sA-Za-z\d*#]", chunk.translate(_PUNCTUATION_ZH)):
            if token in _DIGITS_ZH:
                words.append(_DIGITS_ZH[token])
            elif token in _KEYS_ZH:
                words.append(_KEYS_ZH[token])
            elif token in ",;:.!?":
                if words:
                    words[-1] += token
            elif token.isalpha() and token.isascii():
                words.append(token)
    return " ".join(words)


def to_english_speech(text: str) -> str:
    return _LONG_NUMBER.sub(lambda match: " ".join(match.group(0)), text)


class PromptRenderer:
    """Renders prompt text and recorded files to playable WAVs, once; safe to share between calls."""

    def __init__(
        self,
        cache_dir: Path,
        prompts_dir: Path | None = None,
        *,
        speed: int = 150,
        espeak: str = "espeak-ng",
        sox: str = "sox",
    ) -> None:
        self.cache_dir = cache_dir
        self.prompts_dir = prompts_dir
        self.speed = speed
        self.espeak = espeak
        self.sox = sox
        self._inflight: dict[Path, asyncio.Future[Path]] = {}
        self._ready: set[Path] = set()  # files known to exist: the hot path needs no system call
        self._readings: dict[str, list[str]] = {}  # hanzi run → pinyin, made by a child (prepare)

    def key(self, text: str, language: str) -> str:
        voice = VOICES[language]
        material = f"v1|{language}|{voice}|{self.speed}|{SAMPLE_RATE}|{text}"
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    async def render(
        self, parts: Sequence[PromptPart], language: str, variables: Mapping[str, Value] | None = None
    ) -> Path:
        """One WAV for a whole prompt in ``language`` (a part's own ``language`` wins), placeholders
        filled from ``variables``."""
        files = [await self._part(part, language, variables or {}) for part in parts]
        if len(files) == 1:
            return files[0]
        digest = hashlib.sha256("|".join(str(file) for file in files).encode()).hexdigest()[:32]
        target = self.cache_dir / f"seq-{digest}.wav"
        return await self._once(target, lambda tmp: asyncio.to_thread(_concatenate, files, tmp))

    async def speak(self, text: str, language: str) -> Path:
        """``text`` spoken in ``language`` (``zh`` or ``en``): the recorded override or the TTS file."""
        if language not in VOICES:
            raise PromptError(f"no voice for language {language!r} (have {', '.join(VOICES)})")
        override, cached = self._files(text, language)
        if override is not None and await asyncio.to_thread(os.path.isfile, override):
            return await self.recorded(override)
        return await self._once(cached, lambda tmp: self._synthesize(text, language, tmp))

    def _files(self, text: str, language: str) -> tuple[Path | None, Path]:
        """Where ``speak`` looks for ``text``: the recorded override (with a prompts directory), then the
        TTS cache."""
        key = self.key(text, language)
        override = self.prompts_dir / f"{key}.wav" if self.prompts_dir is not None else None
        return override, self.cache_dir / f"{key}.wav"

    async def recorded(self, source: Path) -> Path:
        """A recorded file converted (once per version of the file) to the playback format."""
        try:
            stat = await asyncio.to_thread(os.stat, source)
        except OSError:
            raise PromptError(f"recorded prompt {source} is missing") from None
        identity = f"{source}|{stat.st_mtime_ns}|{stat.st_size}"
        digest = hashlib.sha256(identity.encode()).hexdigest()
        return await self._once(
            self.cache_dir / f"rec-{digest[:32]}.wav", lambda tmp: self._convert(source, tmp)
        )

    async def beep(self) -> Path:
        return await self._once(
            self.cache_dir / "beep-1000hz.wav",
            lambda tmp: self._run(
                [self.sox, "-n", *_FORMAT, str(tmp), "synth", "0.35", "sine", "1000", "vol", "0.4"]
            ),
        )

    async def prepare(self, parts: Sequence[PromptPart], language: str) -> int:
        """Render the parts that have no placeholders (the static prompts of a flow) ahead of calls;
        returns how many distinct prompts were rendered or found. Failures are logged, not raised.

        Unless this process converts Mandarin already, pypinyin (~55 MB, which every telephony worker
        would keep for good) is left to one child process (``python -m ivr_flows.tts``): it makes the
        Mandarin prompts missing from the cache, and reads every run of hanzi in the parts, those with
        placeholders too (``{position}`` splits 您前面还有{position}位), into
        ``<cache_dir>/pinyin-<hash>.json``. A prompt whose values are digits or Latin letters (a queue
        position, a ticket number) is then spoken from those readings; only other hanzi in a value make
        this process import pypinyin."""
        every = list(
            dict.fromkeys(
                (text, text_language) for part in parts for text, text_language in _all_texts(part, language)
            )
        )
        texts = [(text, text_language) for text, text_language in every if not Template(text).names]
        if "pypinyin" not in sys.modules:
            await self._read_in_child(
                [text for text, text_language in texts if text_language == "zh"],
                sorted(
                    {run for text, text_language in every if text_language == "zh" for run in han_runs(text)}
                ),
            )
        done = 0
        for text, text_language in texts:
            try:
                await self.speak(text, text_language)
                done += 1
            except PromptError as exc:
                log.warning("ivr.prompt_failed", text=text[:80], error=str(exc))
        return done

    def _made(self, text: str, language: str) -> bool:
        """Whether ``speak`` has a file for ``text`` without synthesising it (a recording or the cache)."""
        return any(path is not None and path.is_file() for path in self._files(text, language))

    async def _read_in_child(self, mandarin: list[str], runs: list[str]) -> None:
        """In a child process (same cache, same locks): ``speak`` the Mandarin ``texts`` not made yet, and
        read ``runs`` unless their readings are on disk; what it could not make is left for this process
        to try (and report)."""
        readings_file = self.cache_dir / f"pinyin-{_digest(runs)}.json"
        readings = await asyncio.to_thread(_load_readings, readings_file)
        missing = [text for text in mandarin if not await asyncio.to_thread(self._made, text, "zh")]
        if missing or readings is None:
            command = [
                *(sys.executable, "-m", "ivr_flows.tts", str(self.cache_dir), "zh"),
                *("--speed", str(self.speed), "--espeak", self.espeak, "--sox", self.sox),
                *("--readings", str(readings_file)),
            ]
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            stdin = json.dumps({"texts": missing, "runs": runs}, ensure_ascii=False).encode()
            _, err = await communicate(process, stdin, within=60 + 5 * len(missing))
            if process.returncode != 0:
                log.warning(
                    "ivr.prompt_child_failed",
                    code=process.returncode,
                    error=err.decode(errors="replace")[-300:],
                )
            readings = await asyncio.to_thread(_load_readings, readings_file)
        self._readings.update(readings or {})

    # ------------------------------------------------------------------------------------------ helpers

    async def _part(self, part: PromptPart, language: str, variables: Mapping[str, Value]) -> Path:
        if part.file is not None and self.prompts_dir is not None:
            source = self.prompts_dir / part.file
            if part.say is None or await asyncio.to_thread(os.path.isfile, source):
                return await self.recorded(source)
        chosen = _text_for(part, language)
        if chosen is None:
            raise PromptError(f"recorded prompt {part.file} needs a prompts directory")
        text, text_language = chosen
        return await self.speak(Template(text).render(dict(variables)), text_language)

    async def _once(self, target: Path, make: Callable[[Path], Awaitable[object]]) -> Path:
        """``target``, made by ``make(tmp_path)`` unless it exists; concurrent requests share one run, in
        this process and in every other process sharing the cache (a lock file beside ``target``: a pool
        of telephony workers starting on a cold cache renders each prompt once, not once per worker), and
        the file appears atomically (readers see all of it or nothing)."""
        if target in self._ready:
            return target
        if await asyncio.to_thread(os.path.isfile, target):
            self._ready.add(target)
            return target
        pending = self._inflight.get(target)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._inflight[target] = future
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            lock = await _lock_exclusively(target.with_name(f".{target.name}.lock"))
            try:
                if not await asyncio.to_thread(os.path.isfile, target):  # not made meanwhile elsewhere
                    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{id(future)}.wav")
                    try:
                        await make(tmp)
                        os.replace(tmp, target)
                    finally:
                        tmp.unlink(missing_ok=True)
            finally:
                os.close(lock)  # releases the lock
            self._ready.add(target)
            future.set_result(target)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else PromptError("cancelled"))
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            del self._inflight[target]
        return target

    async def _synthesize(self, text: str, language: str, target: Path) -> None:
        spoken = to_pinyin(text, self._readings) if language == "zh" else to_english_speech(text)
        if not spoken.strip():
            raise PromptError(f"nothing to say in {text!r}")
        wav = await self._run(
            [self.espeak, "-v", VOICES[language], "-s", str(self.speed), "--stdout", "--stdin"],
            stdin=spoken.encode(),
        )
        await self._run(
            [self.sox, "-V1", "-t", "wav", "-", *_FORMAT, str(target), "gain", "-n", "-3"], stdin=wav
        )

    async def _convert(self, source: Path, target: Path) -> None:
        await self._run([self.sox, "-V1", str(source), *_FORMAT, str(target)])

    async def _run(self, command: list[str], stdin: bytes | None = None) -> bytes:
        if shutil.which(command[0]) is None:
            raise PromptError(f"{command[0]} is not installed (Debian packages espeak-ng and sox)")
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await communicate(process, stdin, within=30)
        if process.returncode != 0:
            raise PromptError(
                f"{command[0]} failed ({process.returncode}): {err.decode(errors='replace')[:300]}"
            )
        return out


async def _lock_exclusively(path: Path) -> int:
    """An open descriptor of ``path`` holding an exclusive ``flock``, once the holder (another process or
    renderer) lets go; closing it releases the lock. Polled, so waiting takes no thread and a cancelled
    wait holds nothing. Lock files stay: removing one while another process waits on it would let a third
    lock a new file of the same name."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return descriptor
            except BlockingIOError:
                await asyncio.sleep(_LOCK_POLL_SECONDS)
    except BaseException:
        os.close(descriptor)
        raise


_FORMAT = ("-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "wav")


def _text_for(part: PromptPart, language: str) -> tuple[str, str] | None:
    """``(text, language)`` to say for ``part`` on a call in ``language``: the part's own language wins;
    a part with one text per language falls back to its first text when the call's language is missing."""
    if isinstance(part.say, str):
        return part.say, part.language or language
    if isinstance(part.say, dict):
        chosen = part.language or language
        for text_language, text in part.say.items():
            if text_language == chosen:
                return text, text_language
        return next((text, text_language) for text_language, text in part.say.items())
    return None


def _all_texts(part: PromptPart, language: str) -> Iterator[tuple[str, str]]:
    if isinstance(part.say, dict):
        yield from ((text, text_language) for text_language, text in part.say.items())
    elif isinstance(part.say, str):
        yield part.say, part.language or language


def _concatenate(files: Sequence[Path], target: Path) -> None:
    gap = b"\x00\x00" * int(SAMPLE_RATE * PART_GAP_SECONDS)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        for index, file in enumerate(files):
            with wave.open(str(file), "rb") as part:
                if (part.getnchannels(), part.getsampwidth(), part.getframerate()) != (1, 2, SAMPLE_RATE):
                    raise PromptError(f"{file} is not 16 kHz 16-bit mono")
                if index:
                    out.writeframes(gap)
                out.writeframes(part.readframes(part.getnframes()))


def _digest(runs: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(runs), ensure_ascii=False).encode()).hexdigest()[:24]


def _load_readings(path: Path) -> dict[str, list[str]] | None:
    """The readings written by ``write_readings``; None when missing or not whole."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(
        isinstance(run, str) and isinstance(reading, list) and all(isinstance(s, str) for s in reading)
        for run, reading in data.items()
    ):
        return None
    return data


def write_readings(runs: Sequence[str], path: Path) -> None:
    """``read_runs(runs)`` into ``path``, whole."""
    write_whole(path, json.dumps(read_runs(runs), ensure_ascii=False).encode())


async def _speak_all(renderer: PromptRenderer, texts: list[str], language: str) -> int:
    failed = 0
    for text in texts:
        try:
            await renderer.speak(text, language)
        except PromptError as exc:
            print(f"{text[:80]}: {exc}", file=sys.stderr)
            failed += 1
    return failed


def main(argv: list[str] | None = None) -> int:
    """``python -m ivr_flows.tts CACHE_DIR LANGUAGE [--readings FILE]`` with ``{"texts": [...], "runs":
    [...]}`` on stdin: synthesise the texts into the cache and, with ``--readings``, write the runs'
    readings there (``PromptRenderer.prepare`` runs this); exit status 1 if any text failed."""
    parser = argparse.ArgumentParser(prog="python -m ivr_flows.tts")
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("language", choices=sorted(VOICES))
    parser.add_argument("--speed", type=int, default=150)
    parser.add_argument("--espeak", default="espeak-ng")
    parser.add_argument("--sox", default="sox")
    parser.add_argument("--readings", type=Path)
    args = parser.parse_args(argv)
    request = json.load(sys.stdin)
    texts = [str(text) for text in request.get("texts", [])]
    if args.readings is not None:
        write_readings([str(run) for run in request.get("runs", [])], args.readings)
    renderer = PromptRenderer(args.cache_dir, speed=args.speed, espeak=args.espeak, sox=args.sox)
    return 1 if asyncio.run(_speak_all(renderer, texts, args.language)) else 0


if __name__ == "__main__":
    sys.exit(main())
