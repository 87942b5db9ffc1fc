"""SMS providers behind one interface: an HTTP gateway and a local sink for development.

``send`` returns the provider's message id. It raises ``ProviderUnavailable`` when trying again later may
work (the gateway is down, times out, answers 5xx or 429) and ``ProviderRejected`` when it will not (4xx).
Each send carries the message's own id as ``reference`` (and ``Idempotency-Key``), so a gateway that got a
request whose answer was lost does not deliver it twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from bson import ObjectId
from pymongo import ASCENDING, IndexModel, ReturnDocument

from core.db import Database, register_indexes, utcnow

if TYPE_CHECKING:
    import aiohttp

register_indexes("sms_sink", IndexModel([("reference", ASCENDING)], unique=True))


class ProviderUnavailable(Exception):
    """The provider could not take the message now; retry later."""


class ProviderRejected(Exception):
    """The provider refused the message; retrying will not help."""


class SmsProvider(Protocol):
    name: str

    async def send(self, to: str, text: str, *, sender: str, reference: str) -> str:
        """Hand the message to the provider; its id for the message."""
        ...

    async def close(self) -> None: ...


class HttpSmsProvider:
    """``POST {base_url}/messages`` with ``{"to", "from", "text", "reference"}`` and a bearer key; the
    answer ``{"id": …}`` is the message's id for delivery receipts."""

    name = "http"

    def __init__(self, base_url: str, api_key: str | None, *, timeout_seconds: float = 10.0) -> None:
        self.url = base_url.rstrip("/") + "/messages"
        self.api_key = api_key
        self.timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def send(self, to: str, text: str, *, sender: str, reference: str) -> str:
        import aiohttp  # on the first text: a deployment without an HTTP gateway never loads it

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_seconds))
        headers = {"Idempotency-Key": reference}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = {"to": to, "from": sender, "text": text, "reference": reference}
        try:
            async with self._session.post(self.url, json=payload, headers=headers) as response:
                body: Any = await response.json(content_type=None) if response.status < 300 else None
                if response.status >= 500 or response.status == 429:
                    raise ProviderUnavailable(f"gateway answered {response.status}")
                if response.status >= 400:
                    raise ProviderRejected(f"gateway refused the message: {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(f"gateway unreachable: {type(exc).__name__}: {exc}") from exc
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderUnavailable("gateway answered without a message id")
        return str(body["id"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SinkSmsProvider:
    """Development: every message is stored in ``sms_sink`` (visible at ``GET /api/sms/sink``) instead of
    being sent. Idempotent by reference."""

    name = "sink"

    def __init__(self, db: Database) -> None:
        self.sink = db["sms_sink"]

    async def send(self, to: str, text: str, *, sender: str, reference: str) -> str:
        doc = await self.sink.find_one_and_update(
            {"reference": reference},
            {
                "$setOnInsert": {
                    "_id": ObjectId(),
                    "to": to,
                    "sender": sender,
                    "text": text,
                    "reference": reference,
                    "at": utcnow(),
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return f"sink-{doc['_id']}"

    async def close(self) -> None:
        return None
