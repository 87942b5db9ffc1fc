"""The call as the flow executor sees it: an abstract async interface the telephony bridge implements.

``telephony/`` implements ``Call`` on top of pjsua2 (its own thread; every method here posts a command to
it and awaits the answer). ``ivr_flows.fake_call.FakeCall`` is the working in-memory implementation tests use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol


class CallHungUp(Exception):
    """The caller hung up: raised by any ``Call`` method used after (or interrupted by) the hang-up."""


class Call(Protocol):
    """One answered-or-ringing inbound call leg.

    Promises every implementation keeps:

    * DTMF digits are buffered from the moment the call is answered until a ``collect_dtmf`` consumes them,
      so a caller can type ahead of a prompt. A digit that barges in on ``play`` is not consumed by it.
    * Once the caller hangs up, ``hung_up`` is set and every pending or later method raises ``CallHungUp``
      — except ``record``, which returns the path with the audio recorded up to the hang-up, and
      ``hangup``, which is then a no-op.
    * Every method is safe to cancel: cancelling ``play`` stops the prompt, cancelling ``collect_dtmf``
      leaves unconsumed digits in the buffer, cancelling ``record`` keeps what was recorded.
    """

    @property
    def call_id(self) -> str:
        """Unique id of the call (the SIP Call-ID of the inbound leg)."""

    @property
    def caller(self) -> str:
        """The calling number in E.164 (``+8613800138000``), or ``""`` when withheld."""

    @property
    def called(self) -> str:
        """The number or extension that was dialled."""

    @property
    def hung_up(self) -> asyncio.Event:
        """Set when the call has ended, whoever ended it."""

    async def answer(self) -> None:
        """Answer the call (200 OK); a no-op when already answered."""

    async def play(self, path: str, /, *, barge_in: bool = False) -> object:
        """Play a WAV file (mono 16-bit PCM, 8 or 16 kHz) to the caller; returns when it has played — or,
        with ``barge_in``, as soon as the caller presses a DTMF digit (the digit stays buffered). What it
        returns is the bridge's business (the executor ignores it)."""

    async def stop_playback(self) -> None:
        """Stop whatever is playing now; a no-op when nothing is."""

    async def collect_dtmf(
        self,
        max_digits: int,
        timeout: float,  # noqa: ASYNC109 - the inter-digit timeout of the protocol, not a deadline
        terminators: str = "#",
        first_digit_timeout: float | None = None,
    ) -> str:
        """Digits the caller typed (buffered ones first), without the terminator.

        Returns after ``max_digits`` digits, a terminator, ``timeout`` seconds after the last digit, or
        ``first_digit_timeout`` (default ``timeout``) seconds without any digit — then with ``""``.
        """

    async def record(self, path: str, max_seconds: float, /) -> object:
        """Record what the caller says into the WAV file ``path`` until ``max_seconds``, a DTMF digit or
        the hang-up; returns when the file is complete (what it returns — the path, a recording record —
        is the bridge's business: the executor uses ``path``)."""

    async def transfer(self, target: str, attended: bool = False) -> None:
        """Transfer the caller to ``target`` (SIP URI or number); blind unless ``attended``."""

    async def hangup(self, cause: str = "normal") -> None:
        """End the call with ``cause``; a no-op when it has already ended."""

    def audio_frames(self) -> AsyncIterator[bytes]:
        """What the caller says, as it arrives: 16 kHz signed 16-bit little-endian mono PCM frames.
        The iterator ends when the call ends; each call of this method starts a new tap."""
