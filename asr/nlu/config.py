"""The analyzer's configuration: YAML files in one directory, validated into typed objects.

A config directory holds:

``nlu.yaml``
    thresholds and limits (``unknown_threshold``, ``keyword_weight``, ``max_chars``, ``timezone``), the
    languages to load, each intent's default priority and the intents whose keywords only count in short
    texts (``keyword_max_words``).
``<language>.yaml`` (``zh.yaml``, ``en.yaml``)
    per intent: the display ``label`` in that language, ``keywords`` (rules) and ``examples`` (training
    data); plus ``out_of_scope`` examples, trained as the class that means "none of these".
``lexicon.yaml``
    the domain user dictionary for jieba and the product entity: ``products`` (canonical ``name`` and
    ``aliases``) and ``order_terms``.
``sentiment.yaml``
    word lists (Chinese, English and emoji mixed) per signal: ``anger``, ``negative``, ``positive``,
    ``urgency``, ``escalation`` and ``calm`` (phrases such as 不急 / "no rush" that cancel urgency).

``eval.yaml`` (the labelled evaluation set) lives beside them but is read only by ``asr.nlu.evaluation``.
Every error names the file and the key that is wrong.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import Invalid

from .models import UNKNOWN_INTENT, Label, Priority

DEFAULT_CONFIG_DIR = Path(__file__).with_name("data")
M = TypeVar("M", bound=BaseModel)
SUPPORTED_LANGUAGES = ("zh", "en")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(_Strict):
    unknown_threshold: float = Field(0.45, gt=0.0, lt=1.0)
    keyword_weight: float = Field(0.5, ge=0.0, le=5.0)
    max_chars: int = Field(2000, ge=16, le=1_000_000)
    timezone: str = "Asia/Shanghai"
    languages: list[str] = Field(default_factory=lambda: list(SUPPORTED_LANGUAGES), min_length=1)
    intent_priority: dict[str, Priority] = Field(default_factory=dict)
    keyword_max_words: dict[str, int] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("languages")
    @classmethod
    def _supported_languages(cls, value: list[str]) -> list[str]:
        unsupported = sorted(set(value) - set(SUPPORTED_LANGUAGES))
        if unsupported:
            raise ValueError(f"unsupported languages {unsupported}; supported: {list(SUPPORTED_LANGUAGES)}")
        return value


class IntentSpec(_Strict):
    label: str = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)
    examples: list[str] = Field(min_length=1)


class LanguageFile(_Strict):
    language: str
    intents: dict[str, IntentSpec] = Field(min_length=1)
    out_of_scope: list[str] = Field(default_factory=list)


class Product(_Strict):
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)


class Lexicon(_Strict):
    products: list[Product] = Field(default_factory=list)
    order_terms: list[str] = Field(default_factory=list)

    def dictionary_words(self) -> list[str]:
        """Every word jieba must keep whole: product names, their aliases and order terms."""
        words = [word for product in self.products for word in (product.name, *product.aliases)]
        return [*words, *self.order_terms]


class SentimentLexicon(_Strict):
    anger: list[str] = Field(default_factory=list)
    negative: list[str] = Field(default_factory=list)
    positive: list[str] = Field(default_factory=list)
    urgency: list[str] = Field(default_factory=list)
    escalation: list[str] = Field(default_factory=list)
    calm: list[str] = Field(default_factory=list)


class Intent(_Strict):
    """One intent across languages: bilingual label, every keyword, examples per language."""

    name: str
    label: Label
    keywords: tuple[str, ...]
    examples: dict[str, tuple[str, ...]]
    priority: Priority


class NluConfig(_Strict):
    """Everything the analyzer needs, validated and merged across the language files."""

    settings: Settings
    intents: dict[str, Intent]
    out_of_scope: dict[str, tuple[str, ...]]
    lexicon: Lexicon
    sentiment: SentimentLexicon

    def training_examples(self) -> list[tuple[str, str]]:
        """``(text, class)`` pairs in a stable order; out-of-scope examples carry the class ``unknown``."""
        pairs = [
            (example, intent.name)
            for intent in self.intents.values()
            for language in self.settings.languages
            for example in intent.examples.get(language, ())
        ]
        pairs += [
            (example, UNKNOWN_INTENT)
            for language in self.settings.languages
            for example in self.out_of_scope.get(language, ())
        ]
        return pairs


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError as exc:
        raise Invalid(f"NLU config file {path} is missing", code="nlu_config_invalid") from exc
    except yaml.YAMLError as exc:
        raise Invalid(f"NLU config file {path} is not valid YAML: {exc}", code="nlu_config_invalid") from exc


def _parse(model: type[M], path: Path, data: Any) -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise Invalid(f"{path.name}: {key}: {first['msg']}", code="nlu_config_invalid") from exc


def _invalid(path: Path, key: str, message: str) -> Invalid:
    return Invalid(f"{path.name}: {key}: {message}", code="nlu_config_invalid")


def load_config(config_dir: Path = DEFAULT_CONFIG_DIR) -> NluConfig:
    """Read and validate a config directory; raises ``core.errors.Invalid`` naming the file and key."""
    settings_path = config_dir / "nlu.yaml"
    settings = _parse(Settings, settings_path, _read_yaml(settings_path))
    files: dict[str, LanguageFile] = {}
    for language in settings.languages:
        path = config_dir / f"{language}.yaml"
        files[language] = _parse(LanguageFile, path, _read_yaml(path))
        if files[language].language != language:
            raise _invalid(path, "language", f"says {files[language].language!r}, expected {language!r}")
        if UNKNOWN_INTENT in files[language].intents:
            raise _invalid(path, f"intents.{UNKNOWN_INTENT}", "is reserved; use out_of_scope")
    names = list(files[settings.languages[0]].intents)
    for language, language_file in files.items():
        if set(language_file.intents) != set(names):
            differing = sorted(set(language_file.intents) ^ set(names))
            raise _invalid(
                config_dir / f"{language}.yaml", "intents", f"differ between languages: {differing}"
            )
    for key in ("intent_priority", "keyword_max_words"):
        unknown_names = sorted(set(getattr(settings, key)) - set(names))
        if unknown_names:
            raise _invalid(settings_path, key, f"names unknown intents {unknown_names}")
    intents = {name: _merge_intent(name, files, settings) for name in names}
    lexicon_path = config_dir / "lexicon.yaml"
    sentiment_path = config_dir / "sentiment.yaml"
    return NluConfig(
        settings=settings,
        intents=intents,
        out_of_scope={language: tuple(f.out_of_scope) for language, f in files.items()},
        lexicon=_parse(Lexicon, lexicon_path, _read_yaml(lexicon_path)),
        sentiment=_parse(SentimentLexicon, sentiment_path, _read_yaml(sentiment_path)),
    )


def _merge_intent(name: str, files: dict[str, LanguageFile], settings: Settings) -> Intent:
    labels = {language: f.intents[name].label for language, f in files.items()}
    label = Label(zh=labels.get("zh", labels.get("en", name)), en=labels.get("en", labels.get("zh", name)))
    keywords = dict.fromkeys(keyword for f in files.values() for keyword in f.intents[name].keywords)
    return Intent(
        name=name,
        label=label,
        keywords=tuple(keywords),
        examples={language: tuple(f.intents[name].examples) for language, f in files.items()},
        priority=settings.intent_priority.get(name, Priority.normal),
    )
