"""The HTTP CRM connector against a real HTTP server speaking the contract of ``omnichannel/crm.py``: orders,
payments and stock come back as the customer's system says; a system that errs, answers garbage or is too
slow is ``CrmUnavailable``, and the bot then says the order system cannot be reached instead of guessing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from core.db import Database
from core.settings import Settings
from omnichannel.channels.bot import TEXTS
from omnichannel.crm import CrmUnavailable, HttpCrmConnector, OrderStatus, PaymentState
from tests.channels.conftest import eventually, post_sms_webhook
from tests.conftest import ApiClient

API_KEY = "crm-api-key"
TIMEOUT_SECONDS = 0.5
Failure = Literal["error", "garbage", "malformed", "slow"]


class CustomerSystem:
    """A working CRM/ERP behind the connector's REST contract, with a switch to make it misbehave."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {
            "88001": {
                "number": "88001",
                "status": "shipped",
                "items": [{"sku": "SKU-TEA", "name": "龙井茶", "quantity": 2}],
                "carrier": "京东物流",
                "tracking_number": "JD0012345678",
                "updated_at": "2026-11-25T08:00:00Z",
            }
        }
        self.payments = {"88001": {"state": "paid", "amount": "59.00", "currency": "CNY"}}
        self.stock = {"SKU-TEA": {"sku": "SKU-TEA", "name": "龙井茶", "available": 12}}
        self.failure: Failure | None = None
        self.authorizations: list[str | None] = []
        self.released = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/crm/orders/{number}", self.order)
        self.app.router.add_get("/crm/orders/{number}/payment", self.payment)
        self.app.router.add_get("/crm/stock/{sku}", self.stock_level)

    async def order(self, request: web.Request) -> web.Response:
        return await self._answer(request, self.orders.get(request.match_info["number"]))

    async def payment(self, request: web.Request) -> web.Response:
        return await self._answer(request, self.payments.get(request.match_info["number"]))

    async def stock_level(self, request: web.Request) -> web.Response:
        return await self._answer(request, self.stock.get(request.match_info["sku"]))

    async def _answer(self, request: web.Request, found: dict[str, Any] | None) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        if self.failure == "slow":
            # Longer than the connector waits; released when the test ends so the server stops at once.
            await asyncio.wait_for(self.released.wait(), timeout=10 * TIMEOUT_SECONDS)
        if self.failure == "error":
            return web.json_response({"error": "database is down"}, status=500)
        if self.failure == "garbage":
            return web.Response(text="<html><body>Bad Gateway</body></html>", content_type="text/html")
        if self.failure == "malformed":
            return web.json_response({"number": "88001", "status": "lost in space"})
        if found is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(found)


@pytest.fixture
async def crm() -> AsyncIterator[tuple[CustomerSystem, str]]:
    system = CustomerSystem()
    server = TestServer(system.app, host="127.0.0.1")
    await server.start_server()
    yield system, str(server.make_url("/crm"))
    system.released.set()
    await server.close()


@pytest.fixture
def settings(settings: Settings, crm: tuple[CustomerSystem, str]) -> Settings:
    return settings.model_copy(
        update={
            "crm_provider": "http",
            "crm_http_base_url": crm[1],
            "crm_http_api_key": SecretStr(API_KEY),
            "crm_timeout_seconds": TIMEOUT_SECONDS,
        }
    )


@pytest.fixture
async def connector(crm: tuple[CustomerSystem, str]) -> AsyncIterator[HttpCrmConnector]:
    connected = HttpCrmConnector(crm[1], API_KEY, timeout_seconds=TIMEOUT_SECONDS)
    yield connected
    await connected.close()


async def test_the_connector_returns_what_the_customer_system_says(
    crm: tuple[CustomerSystem, str], connector: HttpCrmConnector
) -> None:
    system, _ = crm
    order = await connector.order("88001")
    assert order is not None
    assert (order.number, order.status, order.carrier, order.tracking_number) == (
        "88001",
        OrderStatus.shipped,
        "京东物流",
        "JD0012345678",
    )
    assert [(item.sku, item.quantity) for item in order.items] == [("SKU-TEA", 2)]
    assert order.updated_at == dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    payment = await connector.payment("88001")
    assert payment is not None and (payment.state, payment.amount) == (PaymentState.paid, "59.00")
    stock = await connector.stock("SKU-TEA")
    assert stock is not None and stock.available == 12
    assert await connector.order("99999") is None
    assert await connector.stock("SKU-NONE") is None
    assert system.authorizations == [f"Bearer {API_KEY}"] * 5


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("error", "CRM answered 500 for /orders/88001"),
        ("garbage", "CRM answer for /orders/88001 is not JSON"),
        ("malformed", "CRM answer for /orders/88001 is malformed"),
        ("slow", "CRM unreachable: TimeoutError"),
    ],
)
async def test_a_customer_system_that_cannot_answer_is_unavailable(
    crm: tuple[CustomerSystem, str], connector: HttpCrmConnector, failure: Failure, reason: str
) -> None:
    crm[0].failure = failure
    started = asyncio.get_running_loop().time()
    with pytest.raises(CrmUnavailable, match=reason):
        await connector.order("88001")
    assert asyncio.get_running_loop().time() - started < TIMEOUT_SECONDS + 1.0
    crm[0].failure = None
    crm[0].released.set()
    order = await connector.order("88001")  # the same connector recovers with the system
    assert order is not None and order.status is OrderStatus.shipped


async def sms_to(db: Database, number: str, count: int) -> list[str] | None:
    texts = [doc["text"] async for doc in db["sms_sink"].find({"to": number}, sort=[("at", 1)])]
    return texts if len(texts) >= count else None


async def test_the_bot_answers_an_order_question_from_the_crm_and_says_so_when_the_crm_fails(
    crm: tuple[CustomerSystem, str], http: ApiClient, db: Database
) -> None:
    system, _ = crm
    number = "+8613900000041"

    async def ask(message_id: str, text: str, answers: int) -> str:
        status, _, _ = await post_sms_webhook(
            http, "/api/sms/inbound", {"id": message_id, "from": number, "text": text}
        )
        assert status == 200
        texts = await eventually(lambda: sms_to(db, number, answers), f"answer {answers} by SMS")
        assert len(texts) == answers, texts
        return str(texts[-1])

    assert await ask("crm-1", "订单 88001 到哪了？", 1) == (
        "订单 88001：已发货，运输中（京东物流，运单号 JD0012345678）。付款状态：已付款（¥59.00）。"
    )
    assert await ask("crm-2", "订单 77777 到哪了？", 2) == "没有找到订单 77777，请核对订单号后再试。"
    assert set(system.authorizations) == {f"Bearer {API_KEY}"}

    failures: tuple[Failure, ...] = ("error", "garbage", "slow")
    for index, failure in enumerate(failures, start=3):
        system.failure = failure
        answer = await ask(f"crm-{index}", "订单 88001 到哪了？", index)
        assert answer == TEXTS["crm_down"]["zh"], failure
    system.failure = None
    system.released.set()
    assert "已发货" in await ask("crm-6", "订单 88001 发货了吗？", 6)
