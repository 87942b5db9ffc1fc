"""No call stays "active" after its worker died.

Every node runs a ``CallSweeper`` (in ``huiliu telephony``). A worker that stops heartbeating — killed,
crashed, its machine gone — has its live calls ended with cause ``node_lost`` (MongoDB and the timeline,
idempotent, so two nodes sweeping at once do no harm). If the call had been answered, the caller is also
sent a BYE through the SIP front from the dialog the worker saved: they hear the call end instead of dead
air, and Kamailio stops counting the call against the worker slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from core.db import utcnow
from core.log import get_logger
from telephony.ledger import CallLedger
from telephony.sip import Dialog, bye_request
from telephony.store import TelephonyStore

log = get_logger(__name__)

# above any CSeq pjsip starts a dialog with, so the caller accepts our BYE
BYE_CSEQ = 1_000_000_000
BYE_RETRANSMIT_SECONDS = (0.5, 1.5)


class CallSweeper:
    def __init__(self, ledger: CallLedger, store: TelephonyStore, *, bind_host: str = "127.0.0.1") -> None:
        self.ledger = ledger
        self.store = store
        self.bind_host = "127.0.0.1" if bind_host in ("", "0.0.0.0") else bind_host
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(self.bind_host, 0)
        )
        self._transport = transport

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def sweep(self) -> int:
        ended = await self.ledger.sweep()
        for doc in ended:
            dialog = doc.get("dialog")
            if dialog:
                self.hang_up(Dialog(**{**dialog, "routes": tuple(dialog.get("routes", ()))}))
        return len(ended)

    def hang_up(self, dialog: Dialog) -> None:
        """Send the caller of a lost call a BYE (UDP, retransmitted twice; the answer is not awaited)."""
        if self._transport is None:
            return
        via = self._transport.get_extra_info("sockname")
        try:
            request, destination = bye_request(dialog, (via[0], via[1]), uuid.uuid4().hex, BYE_CSEQ)
        except ValueError as exc:
            log.warning("call.bye_unroutable", call_id=dialog.call_id, error=str(exc))
            return
        transport = self._transport
        loop = asyncio.get_running_loop()

        def send() -> None:
            with contextlib.suppress(OSError):
                if not transport.is_closing():
                    transport.sendto(request, destination)

        send()
        for delay in BYE_RETRANSMIT_SECONDS:
            loop.call_later(delay, send)
        log.info("call.bye_sent", call_id=dialog.call_id, to=f"{destination[0]}:{destination[1]}")

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


def _unlink(path: Path) -> Any:
    path.unlink(missing_ok=True)
