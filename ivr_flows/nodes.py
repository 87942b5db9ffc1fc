"""The flow language: one typed model per node type, plus the flow header. No I/O.

Each node model knows the graph edges it has (``targets``), the templates and conditions it reads
(``reads``) and the variables it writes (``writes``), so validation needs no per-type knowledge.
The language itself is documented with examples in ``ivr_flows/README.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ivr_flows.expressions import Value

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
PRIORITIES = ("low", "normal", "high", "urgent")

Path = tuple[str | int, ...]
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
DIGITS = re.compile(r"^[0-9*#]{1,8}$")
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

ENTITY_KINDS = ("order_number", "phone", "date", "amount", "product")  # asr.nlu.EntityKind
BUILTIN_VARIABLES: dict[str, Value] = {
    "call_id": "",
    "caller": "",
    "called": "",
    "language": "zh",
    "digits": "",  # the last DTMF input of a menu / collect
    "utterance": "",  # the last text heard by a listen node
    "intent": "",
    "intent_confidence": 0.0,
    "priority": "normal",  # the NLU's suggestion, set by an intent node
}


def _seconds(maximum: float, minimum: float = 0.0) -> Any:
    return Field(strict=True, gt=minimum, le=maximum, allow_inf_nan=False)


DtmfSeconds = Annotated[float, _seconds(60)]
ListenSeconds = Annotated[float, _seconds(60)]
HttpSeconds = Annotated[float, _seconds(30)]
Retries = Annotated[int, Field(strict=True, ge=0, le=5)]
Confidence = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]


@dataclass(frozen=True, slots=True)
class Reading:
    """Text at ``path`` (inside its node) that reads variables: a template, or a condition."""

    path: Path
    text: str
    condition: bool = False


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------------- prompts


class PromptPart(_Spec):
    """One piece of a prompt: TTS text (``say``, one text or one per language) or a recorded ``file``
    (relative to the prompts directory). With both, the file plays and the text is its transcript and
    fallback when the file is missing."""

    say: str | dict[Language, str] | None = None
    file: str | None = Field(default=None, max_length=200)
    language: Language | None = None

    @model_validator(mode="after")
    def _something_to_play(self) -> PromptPart:
        if self.say is None and self.file is None:
            raise ValueError("a prompt needs 'say' (text to speak) or 'file' (a recorded .wav)")
        if isinstance(self.say, str) and not self.say.strip():
            raise ValueError("'say' is empty")
        if self.file is not None and (
            not self.file.endswith(".wav") or self.file.startswith("/") or ".." in self.file.split("/")
        ):
            raise ValueError("'file' is a .wav file inside the prompts directory (a relative path)")
        return self

    def templates(self) -> Iterator[Reading]:
        if isinstance(self.say, str):
            yield Reading(("say",), self.say)
        elif isinstance(self.say, dict):
            for language, text in self.say.items():
                yield Reading(("say", language), text)


def _prompt_parts(value: Any) -> Any:
    if isinstance(value, str | dict):
        value = [value]
    if isinstance(value, list):
        return [{"say": item} if isinstance(item, str) else item for item in value]
    return value


Prompt = Annotated[tuple[PromptPart, ...], BeforeValidator(_prompt_parts), Field(min_length=1, max_length=10)]


# ------------------------------------------------------------------------------------------------ nodes


class Node(_Spec):
    """Fields every node has; ``kind`` is the ``type:`` written in YAML."""

    kind: ClassVar[str]
    waits_for_caller: ClassVar[bool] = False  # menu / collect / listen / callback: a loop through it is fine
    # voicemail / transfer / hangup end the call themselves (or keep what a hang-up cut short): the call
    # ending while they run is their result, not an interruption
    outlives_hangup: ClassVar[bool] = False
    target_fields: ClassVar[tuple[str, ...]] = ()
    template_fields: ClassVar[tuple[str, ...]] = ()
    prompt_fields: ClassVar[tuple[str, ...]] = ()

    type: str
    description: str = ""

    def targets(self) -> Iterator[tuple[Path, str]]:
        """``(path, node id)`` for each edge leaving this node."""
        for name in self.target_fields:
            value = getattr(self, name)
            if value is not None:
                yield (self._alias(name),), value

    def reads(self) -> Iterator[Reading]:
        """Each piece of text that reads variables: a ``{name}`` template or a condition."""
        for name in self.template_fields:
            value = getattr(self, name)
            if isinstance(value, str):
                yield Reading((name,), value)
            elif isinstance(value, dict):
                for key, text in value.items():
                    if isinstance(text, str):
                        yield Reading((name, key), text)
        for name in self.prompt_fields:
            yield from prompt_templates((name,), getattr(self, name))

    def writes(self) -> tuple[str, ...]:
        """The variables this node sets."""
        return ()

    def prompts(self) -> Iterator[tuple[PromptPart, ...]]:
        for name in self.prompt_fields:
            value = getattr(self, name)
            if value:
                yield value

    def _alias(self, name: str) -> str:
        field = type(self).model_fields[name]
        return field.alias or name


def prompt_templates(path: Path, prompt: tuple[PromptPart, ...] | None) -> Iterator[Reading]:
    for index, part in enumerate(prompt or ()):
        for reading in part.templates():
            yield Reading((*path, index, *reading.path), reading.text)


class PlayNode(Node):
    kind = "play"
    target_fields = ("next",)
    prompt_fields = ("prompt",)

    type: Literal["play"]
    prompt: Prompt
    barge_in: bool = False
    next: str


def _digit_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): target for key, target in value.items()}
    return value


class MenuNode(Node):
    kind = "menu"
    waits_for_caller = True
    target_fields = ("on_failure",)
    prompt_fields = ("prompt", "invalid_prompt", "timeout_prompt")

    type: Literal["menu"]
    prompt: Prompt
    choices: Annotated[dict[str, str], BeforeValidator(_digit_keys), Field(min_length=1, max_length=12)]
    timeout: DtmfSeconds = 5.0
    retries: Retries = 2
    invalid_prompt: Prompt | None = None
    timeout_prompt: Prompt | None = None
    into: str | None = None
    on_failure: str

    @field_validator("choices")
    @classmethod
    def _choices_are_digits(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if not DIGITS.match(key)]
        if bad:
            raise ValueError(f"choices are DTMF keys (0-9, * and #); {bad[0]!r} is not")
        return value

    def targets(self) -> Iterator[tuple[Path, str]]:
        for digit, target in self.choices.items():
            yield ("choices", digit), target
        yield from super().targets()

    def writes(self) -> tuple[str, ...]:
        return ("digits",) if self.into is None else ("digits", self.into)


class CollectNode(Node):
    kind = "collect"
    waits_for_caller = True
    target_fields = ("next", "on_failure")
    prompt_fields = ("prompt", "invalid_prompt", "timeout_prompt")

    type: Literal["collect"]
    prompt: Prompt
    into: str
    min_length: int = Field(default=1, strict=True, ge=1, le=32)
    max_length: int = Field(default=16, strict=True, ge=1, le=32)
    terminator: Literal["#", "*", ""] = "#"
    timeout: DtmfSeconds = 5.0
    first_digit_timeout: DtmfSeconds | None = None
    retries: Retries = 2
    invalid_prompt: Prompt | None = None
    timeout_prompt: Prompt | None = None
    sensitive: bool = False  # the digits are kept in the variable but never written to the timeline
    next: str
    on_failure: str

    @model_validator(mode="after")
    def _lengths(self) -> CollectNode:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is more than max_length {self.max_length}")
        return self

    def writes(self) -> tuple[str, ...]:
        return ("digits", self.into)


class DtmfFallback(_Spec):
    """Digits accepted instead of speech: pressed while listening, or asked for after speech failed."""

    prompt: Prompt | None = None
    into: str | None = None  # default: the listen node's ``into``
    max_digits: int = Field(default=16, strict=True, ge=1, le=32)
    terminator: Literal["#", "*", ""] = "#"
    timeout: DtmfSeconds = 5.0
    next: str | None = None  # default: the listen node's ``next``


class ListenNode(Node):
    kind = "listen"
    waits_for_caller = True
    target_fields = ("next", "on_failure")
    prompt_fields = ("prompt", "retry_prompt")

    type: Literal["listen"]
    prompt: Prompt
    into: str = "utterance"
    language: Language | None = None  # default: the call's current language
    grammar: Annotated[list[str], Field(min_length=1, max_length=50)] | None = None
    min_confidence: Confidence = 0.5
    timeout: ListenSeconds = 8.0
    retries: Retries = 1
    retry_prompt: Prompt | None = None
    dtmf_fallback: DtmfFallback | None = None
    next: str
    on_failure: str

    def targets(self) -> Iterator[tuple[Path, str]]:
        yield from super().targets()
        if self.dtmf_fallback is not None and self.dtmf_fallback.next is not None:
            yield ("dtmf_fallback", "next"), self.dtmf_fallback.next

    def reads(self) -> Iterator[Reading]:
        yield from super().reads()
        if self.dtmf_fallback is not None:
            yield from prompt_templates(("dtmf_fallback", "prompt"), self.dtmf_fallback.prompt)

    def prompts(self) -> Iterator[tuple[PromptPart, ...]]:
        yield from super().prompts()
        if self.dtmf_fallback is not None and self.dtmf_fallback.prompt:
            yield self.dtmf_fallback.prompt

    def writes(self) -> tuple[str, ...]:
        fallback = self.dtmf_fallback.into if self.dtmf_fallback and self.dtmf_fallback.into else self.into
        return tuple(dict.fromkeys(("utterance", "digits", self.into, fallback)))


class IntentNode(Node):
    kind = "intent"
    target_fields = ("default",)
    template_fields = ("text",)

    type: Literal["intent"]
    text: str = "{utterance}"
    min_confidence: Confidence = 0.5
    entities: dict[str, str] = {}  # entity kind (order_number, phone, date, amount, product) -> variable
    branches: Annotated[dict[str, str], Field(min_length=1)]
    default: str

    def targets(self) -> Iterator[tuple[Path, str]]:
        for intent, target in self.branches.items():
            yield ("branches", intent), target
        yield from super().targets()

    def writes(self) -> tuple[str, ...]:
        return ("intent", "intent_confidence", "priority", *self.entities.values())


class Case(_Spec):
    when: str
    goto: str


class ConditionNode(Node):
    kind = "condition"
    target_fields = ("otherwise",)

    type: Literal["condition"]
    cases: Annotated[list[Case], Field(min_length=1, max_length=50)]
    otherwise: str = Field(alias="else")

    def targets(self) -> Iterator[tuple[Path, str]]:
        for index, case in enumerate(self.cases):
            yield ("cases", index, "goto"), case.goto
        yield from super().targets()

    def reads(self) -> Iterator[Reading]:
        for index, case in enumerate(self.cases):
            yield Reading(("cases", index, "when"), case.when, condition=True)


class HttpNode(Node):
    kind = "http"
    target_fields = ("next", "on_error")
    template_fields = ("url", "headers", "body")

    type: Literal["http"]
    url: str = Field(pattern=r"^(https?://|\{)\S+$", max_length=2000)  # or a template giving one
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, str] = {}
    body: dict[str, Value] | None = None  # POSTed as JSON; string values are templates
    timeout: HttpSeconds = 3.0
    save: dict[str, str] = {}  # variable -> dotted path in the JSON answer ("order.status", "items.0.sku")
    next: str
    on_error: str  # timeout, connection failure, non-2xx answer or a body that is not JSON

    def writes(self) -> tuple[str, ...]:
        return tuple(self.save)


class SetNode(Node):
    kind = "set"
    target_fields = ("next",)
    template_fields = ("values",)

    type: Literal["set"]
    values: Annotated[dict[str, Value], Field(min_length=1)]
    next: str

    def writes(self) -> tuple[str, ...]:
        return tuple(self.values)


def _parse_hours(text: str) -> tuple[tuple[dt.time, dt.time], ...]:
    """``"09:00-12:00, 13:00-18:00"`` → time ranges; ``"closed"`` → none."""
    if text.strip().lower() == "closed":
        return ()
    ranges = []
    for part in text.split(","):
        match = _HOURS.match(part.strip())
        if match is None:
            raise ValueError(f"{part.strip()!r} is not a range like 09:00-18:00 (or 'closed')")
        h1, m1, h2, m2 = (int(group) for group in match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise ValueError(f"{part.strip()!r} is not a valid time range")
        start = dt.time(h1, m1)
        end = dt.time.max if h2 == 24 else dt.time(h2, m2)
        if end <= start:
            raise ValueError(f"{part.strip()!r} ends before it starts")
        ranges.append((start, end))
    return tuple(ranges)


def _weekday_keys(value: Any) -> Any:
    """``mon-fri: 09:00-18:00`` → one entry per day."""
    if not isinstance(value, dict):
        return value
    days: dict[str, Any] = {}
    for key, hours in value.items():
        first, _, last = str(key).lower().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(
                f"{key!r} is not a weekday or a range like mon-fri (days: {', '.join(WEEKDAYS)})"
            )
        span = WEEKDAYS[WEEKDAYS.index(first) : WEEKDAYS.index(last or first) + 1]
        if not span:
            raise ValueError(f"{key!r}: a day range runs forwards, e.g. mon-fri")
        for day in span:
            if day in days:
                raise ValueError(f"{day} is given twice")
            days[day] = hours
    return days


class BusinessHoursNode(Node):
    kind = "business_hours"
    target_fields = ("open", "closed", "holiday")

    type: Literal["business_hours"]
    timezone: str = "Asia/Shanghai"
    hours: Annotated[dict[str, str], BeforeValidator(_weekday_keys)]
    holidays: list[dt.date] = []
    special_days: dict[dt.date, str] = {}  # a date with its own hours (a make-up working Saturday)
    open: str
    closed: str
    holiday: str | None = None  # default: closed

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name like Asia/Shanghai)") from None
        return value

    @field_validator("hours", "special_days")
    @classmethod
    def _valid_hours(cls, value: dict[Any, str]) -> dict[Any, str]:
        for hours in value.values():
            _parse_hours(hours)
        return value

    def ranges(self, day: dt.date) -> tuple[tuple[dt.time, dt.time], ...]:
        if day in self.special_days:
            return _parse_hours(self.special_days[day])
        return _parse_hours(self.hours.get(WEEKDAYS[day.weekday()], "closed"))


class QueueNode(Node):
    kind = "queue"
    target_fields = ("overflow",)
    template_fields = ("priority",)
    prompt_fields = ("prompt", "hold_prompt", "position_prompt")

    type: Literal["queue"]
    queue: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    skills: list[str] = []  # default: [queue]
    priority: str = "{priority}"  # low / normal / high / urgent, or a template giving one
    max_wait: float = Field(default=300.0, strict=True, gt=0, le=7200, allow_inf_nan=False)
    prompt: Prompt | None = None  # said once before queueing
    hold_prompt: Prompt | None = None  # looped while waiting
    # said after the first hold prompt and then every position_every seconds, while the ACD can tell the
    # caller's place: {queue_position} (1 = next) and {queue_wait_minutes} (expected wait, at least 1)
    position_prompt: Prompt | None = None
    position_every: float = Field(default=60.0, strict=True, ge=15, le=3600, allow_inf_nan=False)
    overflow: str  # after max_wait, or when the queue cannot take the call

    def writes(self) -> tuple[str, ...]:
        return ("queue_position", "queue_wait_minutes")

    @field_validator("priority")
    @classmethod
    def _known_priority(cls, value: str) -> str:
        if "{" not in value and value not in PRIORITIES:
            raise ValueError(f"priority is one of {', '.join(PRIORITIES)} (or a template like {{priority}})")
        return value


class VoicemailNode(Node):
    kind = "voicemail"
    outlives_hangup = True
    target_fields = ("next",)
    prompt_fields = ("prompt",)

    type: Literal["voicemail"]
    prompt: Prompt | None = None
    beep: bool = True
    max_seconds: float = Field(default=120.0, strict=True, gt=0, le=600, allow_inf_nan=False)
    into: str = "voicemail"
    next: str | None = None  # default: hang up

    def writes(self) -> tuple[str, ...]:
        return (self.into,)


class CallbackNode(Node):
    kind = "callback"
    waits_for_caller = True
    target_fields = ("accepted", "declined")
    template_fields = ("number",)
    prompt_fields = ("prompt",)

    type: Literal["callback"]
    prompt: Prompt
    accept: str = Field(default="1", pattern=r"^[0-9*#]$")
    number: str = "{caller}"
    queue: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    timeout: DtmfSeconds = 5.0
    accepted: str
    declined: str


class TicketNode(Node):
    kind = "ticket"
    target_fields = ("next", "on_error")
    template_fields = ("intent", "fields", "summary", "priority")

    type: Literal["ticket"]
    intent: str = "{intent}"
    fields: dict[str, str] = {}  # entity name -> template, e.g. order_number: "{order_number}"
    summary: str = "{utterance}"
    priority: str = "{priority}"
    into: str = "ticket_number"
    next: str
    on_error: str | None = None  # default: next — a failed ticket must not strand the caller

    def writes(self) -> tuple[str, ...]:
        return (self.into,)


class TransferNode(Node):
    kind = "transfer"
    outlives_hangup = True
    target_fields = ("on_failure",)
    template_fields = ("target",)
    prompt_fields = ("prompt",)

    type: Literal["transfer"]
    target: str = Field(min_length=1, max_length=256)
    attended: bool = False
    prompt: Prompt | None = None
    on_failure: str | None = None  # default: hang up


class GotoNode(Node):
    kind = "goto"
    target_fields = ("target",)

    type: Literal["goto"]
    target: str


class HangupNode(Node):
    kind = "hangup"
    outlives_hangup = True
    prompt_fields = ("prompt",)

    type: Literal["hangup"]
    prompt: Prompt | None = None
    cause: str = Field(default="normal", pattern=r"^[a-z_]{1,40}$")


NODE_TYPES: dict[str, type[Node]] = {
    node.kind: node
    for node in (
        PlayNode,
        MenuNode,
        CollectNode,
        ListenNode,
        IntentNode,
        ConditionNode,
        HttpNode,
        SetNode,
        BusinessHoursNode,
        QueueNode,
        VoicemailNode,
        CallbackNode,
        TicketNode,
        TransferNode,
        GotoNode,
        HangupNode,
    )
}


class FlowHeader(_Spec):
    """Everything in a flow document except its nodes."""

    description: str = ""
    language: Language = "zh"
    start: str
    variables: dict[str, Value] = {}
    on_error: str | None = None  # where a call goes when a step fails unexpectedly (default: hang up)
    nodes: Annotated[dict[str, Any], Field(min_length=1, max_length=500)]
