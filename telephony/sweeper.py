"""No call stays "active" after its worker died.

Every node runs a ``CallSweeper`` (in ``huiliu telephony``), and so does every web process
(``LostCallWatch``, started by ``core.app``): a whole telephony node killed at once — its pool, workers and
SIP front — has nobody of its own left to sweep, and may never come back. A worker that stops
heartbeating — killed, crashed, its machine gone — has its live calls ended with cause ``node_lost``
(MongoDB and the timeline, idempotent, so any number of sweepers at once do no harm). If the call had been
answered, the caller is also sent a BYE through the SIP front from the dialog the worker saved: they hear
the call end instead of dead air, and Kamailio stops counting the call against the worker slot. The BYE
is retransmitted for up to 32 s until answered, so a SIP front that died with its node and is back by then
still routes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from core.aio import stop_tasks
from core.db import utcnow
from core.log import get_logger
from omnichannel import Omnichannel
from telephony.ledger import CallLedger
from telephony.sip import Dialog, bye_request, hop
from telephony.store import TelephonyStore

log = get_logger(__name__)

# above any CSeq pjsip starts a dialog with, so the caller accepts our BYE
BYE_CSEQ = 1_000_000_000
# RFC 3261 17.1.2.2: retransmit every T1, doubling up to T2, until timer F (64 * T1)
BYE_T1 = 0.5
BYE_T2 = 4.0
BYE_TIMEOUT = 32.0


class _ByeAnswer(asyncio.DatagramProtocol):
    """Notices the final response to our BYE (any: 200, or 481 from a caller who already hung up)."""

    def __init__(self) -> None:
        self.answered = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if data.startswith(b"SIP/2.0 ") and not data.startswith(b"SIP/2.0 1"):
            self.answered.set()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable: the SIP front is down; keep retransmitting, it may come back


class CallSweeper:
    def __init__(self, ledger: CallLedger, store: TelephonyStore) -> None:
        self.ledger = ledger
        self.store = store
        self._byes: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        for task in list(self._byes):
            task.cancel()

    async def sweep(self) -> int:
        ended = await self.ledger.sweep()
        for doc in ended:
            dialog = doc.get("dialog")
            if dialog:
                await self.hang_up(Dialog(**{**dialog, "routes": tuple(dialog.get("routes", ()))}))
        return len(ended)

    async def hang_up(self, dialog: Dialog) -> None:
        """Send the caller of a lost call a BYE over UDP, retransmitted as RFC 3261 says (T1 doubling to
        T2, for up to 32 s) until it is answered — long enough for a SIP front that died with its node to
        be back and route it.

        It goes from a socket connected to its first hop, so the kernel picks the source address that
        reaches it: the SIP front may be on this host's loopback or in another container."""
        try:
            host, port = hop(dialog.routes[0] if dialog.routes else dialog.target)
            transport, answer = await asyncio.get_running_loop().create_datagram_endpoint(
                _ByeAnswer, remote_addr=(host, port)
            )
        except (ValueError, OSError) as exc:
            log.warning("call.bye_unroutable", call_id=dialog.call_id, error=str(exc))
            return
        via = transport.get_extra_info("sockname")
        request, destination = bye_request(dialog, (via[0], via[1]), uuid.uuid4().hex, BYE_CSEQ)
        task = asyncio.create_task(self._retransmit(transport, answer, request, dialog.call_id))
        self._byes.add(task)
        task.add_done_callback(self._byes.discard)
        log.info("call.bye_sent", call_id=dialog.call_id, to=f"{destination[0]}:{destination[1]}")

    async def _retransmit(
        self, transport: asyncio.DatagramTransport, answer: _ByeAnswer, request: bytes, call_id: str
    ) -> None:
        interval, waited = BYE_T1, 0.0
        try:
            while waited < BYE_TIMEOUT:
                with contextlib.suppress(OSError):
                    transport.sendto(request)
                try:
                    await asyncio.wait_for(answer.answered.wait(), interval)
                    log.info("call.bye_answered", call_id=call_id)
                    return
                except TimeoutError:
                    waited += interval
                    interval = min(interval * 2, BYE_T2)
            log.warning("call.bye_unanswered", call_id=call_id, seconds=BYE_TIMEOUT)
        finally:
            transport.close()

    async def expire_recordings(self, retention_days: int) -> int:
        """Delete recordings older than the retention (files and metadata marked); 0 days keeps all."""
        if retention_days <= 0:
            return 0
        before = utcnow() - dt.timedelta(days=retention_days)
        removed = 0
        for doc in await self.store.recordings_older_than(before):
            await asyncio.to_thread(_unlink, Path(doc["path"]))
            await self.store.mark_recording_deleted(doc["_id"], utcnow())
            removed += 1
        return removed


class LostCallWatch:
    """Sweeps lost calls every ``every`` seconds from a process that is not a telephony node (the web)."""

    def __init__(
        self, store: TelephonyStore, omni: Omnichannel, *, every: float = 2.0, default_region: str = "CN"
    ) -> None:
        ledger = CallLedger(store, omni, worker_id="sweeper", default_region=default_region)
        self.sweeper = CallSweeper(ledger, store)
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lost-call-sweep")

    async def stop(self) -> None:
        await stop_tasks(self._task)
        self._task = None
        self.sweeper.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.sweeper.sweep()
            except Exception as exc:  # MongoDB away: the next round tries again
                log.warning("telephony.sweep_failed", error=str(exc))


def _unlink(path: Path) -> Any:
    path.unlink(missing_ok=True)
