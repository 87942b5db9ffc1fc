"""An agent's consultation before an attended transfer, run by the worker that owns the customer's call.

The agent talks on the web softphone, whose audio rides the customer's call's media channels
(``telephony.media_relay``). To consult:

1. **start**: the customer is put on hold, the worker dials the target (a number, extension or SIP URI
   through the SIP front) and, once it answers, carries the agent's audio to and from the *consultation
   leg* on the same channels — the agent now talks with the target, the customer hears neither of them.
2. then one of
   * **complete**: the customer comes off hold and is bridged to the target in this worker's conference
     bridge (the worker keeps both legs until either side hangs up, then ends the other); the agent leaves
     the call (``call.transferred`` with ``attended: true``);
   * **cancel**, or the target hangs up, does not answer or is busy: the consultation leg ends, the customer
     comes off hold and talks with the agent again.

Bridging rather than REFER/Replaces: the worker owns both legs, and a trunk or a caller's phone may refuse
REFER; ``Call.transfer(attended=True)`` is still there for handing a caller over without an agent.

Each step is on the customer's timeline: ``call.consult_started`` {target} and ``call.consult_ended``
{target, outcome, sip_status}; outcomes are ``completed``, ``cancelled``, ``target_hung_up``,
``caller_hung_up``, and for a target that never answered ``no_answer``, ``busy``, ``unknown_destination``,
``unavailable`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.db import utcnow
from core.log import get_logger
from telephony.api import CallEnded, CallError, CallState, HangupCause
from telephony.calls import CONSULT_TIMEOUT, PjsuaCall
from telephony.sip import uri_user

log = get_logger(__name__)

Dial = Callable[[str], Awaitable[PjsuaCall]]
"""Place the consultation leg to a target (``TelephonyWorker.consult``)."""
CarryAgentAudio = Callable[[str, PjsuaCall | None], Awaitable[None]]
"""(customer call id, leg) → carry the agent's audio of that call to and from ``leg`` (None: nowhere)."""

FAILED_OUTCOMES = {
    HangupCause.busy: "busy",
    HangupCause.rejected: "busy",
    HangupCause.no_answer: "no_answer",
    HangupCause.unknown_destination: "unknown_destination",
    HangupCause.unavailable: "unavailable",
}


class ConsultError(CallError):
    """A consultation step refused; ``code`` says why (the REST layer answers 409 with it)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass
class Consultation:
    call: PjsuaCall
    target: str  # the URI dialed
    leg: PjsuaCall | None = None
    answered: bool = False
    cancelled: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class Consultations:
    """The consultations in progress on one worker, one at most per customer call."""

    def __init__(self, dial: Dial, carry: CarryAgentAudio, target_uri: Callable[[str], str]) -> None:
        self._dial = dial
        self._carry = carry
        self._target_uri = target_uri
        self._active: dict[str, Consultation] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def agent_leg(self, call: PjsuaCall) -> PjsuaCall | None:
        """Whom the agent of ``call`` talks to: the customer, the answered target of a consultation, or
        nobody (None) while the target rings."""
        consult = self._active.get(call.call_id)
        if consult is None:
            return call
        return consult.leg if consult.answered else None

    async def start(self, call: PjsuaCall, target: str) -> PjsuaCall:
        """Hold the customer and ring ``target``; return the leg once it answered (the agent hears it).
        ``ConsultError`` when the target does not answer, is busy, or the consultation was cancelled."""
        if call.call_id in self._active:
            raise ConsultError("consult_in_progress", "a consultation is already in progress on this call")
        if call.answered_at is None:
            raise ConsultError("call_not_answered", "the call is still ringing")
        uri = self._target_uri(target)
        consult = Consultation(call, uri)
        self._active[call.call_id] = consult
        await call.log_event("call.consult_started", {"target": uri})
        try:
            if call.state is not CallState.held:
                await call.hold()
            await self._carry(call.call_id, None)  # nobody hears the agent while the target rings
            try:
                consult.leg = leg = await self._dial(uri)
            except CallError as exc:  # the leg could not even be placed (e.g. this worker is full)
                await self._back_to_caller(consult, "failed", 0)
                raise ConsultError("consult_failed", f"{_shown(uri)}: {exc}") from None
            answered = not consult.cancelled and await _rings_until_answered(call, leg)
            if not answered:
                await leg.hangup(HangupCause.no_answer)
                status = leg.end_status or 480
                outcome = "cancelled" if consult.cancelled else _failed_outcome(leg.cause)
                await self._back_to_caller(consult, outcome, status)
                raise ConsultError(
                    "consult_cancelled" if consult.cancelled else "consult_failed",
                    f"{_shown(uri)}: {outcome} ({status})",
                )
            consult.answered = True
            await self._carry(call.call_id, leg)
        except ConsultError:
            raise
        except BaseException as exc:  # the customer hung up meanwhile, or something broke
            if self._active.get(call.call_id) is consult:
                if consult.leg is not None:
                    with contextlib.suppress(CallError):
                        await consult.leg.hangup(HangupCause.normal)
                outcome = "caller_hung_up" if isinstance(exc, CallEnded) else "failed"
                with contextlib.suppress(Exception):
                    await self._back_to_caller(consult, outcome, 0)
            raise
        consult.watcher = self._spawn(self._watch(consult))
        return leg

    async def complete(self, call: PjsuaCall) -> None:
        """Bridge the customer to the answered target; the agent's part of the call is over."""
        consult = self._active.get(call.call_id)
        if consult is None:
            raise ConsultError("no_consultation", "no consultation is in progress on this call")
        if not consult.answered or consult.leg is None:
            raise ConsultError("consult_not_answered", "the target has not answered yet")
        leg = consult.leg
        del self._active[call.call_id]
        if consult.watcher is not None:
            consult.watcher.cancel()
        await self._carry(call.call_id, None)
        try:
            await call.unhold()
            await call.bridge(leg)
        except CallEnded:
            if call.state is CallState.ended:  # the customer left at the last moment: nobody to hand over
                await leg.hangup(HangupCause.normal)
                await call.log_event(
                    "call.consult_ended",
                    {"target": consult.target, "outcome": "caller_hung_up", "sip_status": 0},
                )
                raise
            # the target left at the last moment: the agent is back with the customer
            await self._back_to_caller(consult, "target_hung_up", leg.end_status or 200)
            raise ConsultError("consult_failed", f"{_shown(consult.target)} hung up") from None
        await call.log_event(
            "call.consult_ended", {"target": consult.target, "outcome": "completed", "sip_status": 200}
        )
        call.journal.transferred(consult.target, True, utcnow())
        self._spawn(_end_together(call, leg))

    async def cancel(self, call: PjsuaCall) -> None:
        """End the consultation (ringing or answered); the agent talks with the customer again."""
        consult = self._active.get(call.call_id)
        if consult is None:
            raise ConsultError("no_consultation", "no consultation is in progress on this call")
        consult.cancelled = True
        if consult.leg is None or not consult.answered:
            # still dialing or ringing: ``start`` sees the leg end and takes the customer back
            if consult.leg is not None:
                await consult.leg.hangup(HangupCause.normal)
            return
        if consult.watcher is not None:
            consult.watcher.cancel()
        await consult.leg.hangup(HangupCause.normal)
        await self._back_to_caller(consult, "cancelled", 200)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch(self, consult: Consultation) -> None:
        """The target hanging up takes the agent back to the customer; the customer hanging up ends the
        consultation leg (the agent's contact ended with the customer's call)."""
        assert consult.leg is not None
        call, leg = consult.call, consult.leg
        await _either_ends(call, leg)
        if self._active.get(call.call_id) is not consult:
            return
        if call.state is CallState.ended:
            await leg.hangup(HangupCause.normal)
            await self._back_to_caller(consult, "caller_hung_up", 0)
        else:
            await self._back_to_caller(consult, "target_hung_up", leg.end_status or 200)

    async def _back_to_caller(self, consult: Consultation, outcome: str, status: int) -> None:
        call = consult.call
        if self._active.get(call.call_id) is consult:
            del self._active[call.call_id]
        alive = call.state is not CallState.ended
        if alive:
            with contextlib.suppress(CallEnded):
                await call.unhold()
                await self._carry(call.call_id, call)
        await call.log_event(
            "call.consult_ended", {"target": consult.target, "outcome": outcome, "sip_status": status}
        )
        log.info("call.consult_ended", call_id=call.call_id, outcome=outcome, sip_status=status)

    def _spawn(self, awaitable: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _rings_until_answered(call: PjsuaCall, leg: PjsuaCall) -> bool:
    """Whether ``leg`` answers within ``CONSULT_TIMEOUT`` (False: it ended or timed out); ``CallEnded``
    when the customer's ``call`` ends first (nobody would be left to transfer)."""
    answered = asyncio.ensure_future(leg.wait_answered())
    caller_left = asyncio.ensure_future(call.wait_ended())
    try:
        await asyncio.wait(
            {answered, caller_left}, timeout=CONSULT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiting in (answered, caller_left):
            waiting.cancel()
            if waiting.done() and not waiting.cancelled():
                waiting.exception()  # a leg that ended (CallEnded) is the answer "no", not an error
    if call.state is CallState.ended:
        raise CallEnded(call.cause or HangupCause.caller_hangup)
    return leg.answered_at is not None and leg.state is not CallState.ended


def _shown(uri: str) -> str:
    return uri_user(uri)[0] or uri


def _failed_outcome(cause: HangupCause | str | None) -> str:
    if isinstance(cause, HangupCause):
        return FAILED_OUTCOMES.get(cause, "failed")
    return "failed"


async def _either_ends(*calls: PjsuaCall) -> None:
    """Return once one of ``calls`` has ended."""
    ended = [asyncio.ensure_future(call.wait_ended()) for call in calls]
    try:
        await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in ended:
            waiting.cancel()


async def _end_together(call: PjsuaCall, leg: PjsuaCall) -> None:
    """After a completed transfer: when the customer or the target hangs up, the other is hung up too."""
    await _either_ends(call, leg)
    await call.hangup(HangupCause.normal)
    await leg.hangup(HangupCause.normal)
