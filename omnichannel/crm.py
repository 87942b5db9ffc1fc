"""The CRM/ERP connector: order status, stock and payment state, as the bot, the IVR and tickets ask them.

``CrmConnector`` is the interface. ``HttpCrmConnector`` speaks a small REST contract to the customer's
system (configured by ``HUILIU_CRM_HTTP_BASE_URL`` / ``HUILIU_CRM_HTTP_API_KEY``); ``DemoCrmConnector`` is a
working in-memory implementation for development, demos and tests.

HTTP contract (JSON, bearer key):

* ``GET {base}/orders/{number}`` → ``{"number", "status", "items": [{"sku", "name", "quantity"}],
  "carrier", "tracking_number", "updated_at"}``; 404 when unknown
* ``GET {base}/orders/{number}/payment`` → ``{"state", "amount", "currency", "paid_at"}``; 404 when unknown
* ``GET {base}/stock/{sku}`` → ``{"sku", "name", "available"}``; 404 when unknown

A connector raises ``CrmUnavailable`` when the system cannot answer now; callers say so to the customer
(or hand off) instead of guessing.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from core.settings import Settings

if TYPE_CHECKING:
    import aiohttp

M = TypeVar("M", bound=BaseModel)


class CrmUnavailable(Exception):
    """The CRM/ERP did not answer (down, timed out, malformed answer)."""


class OrderStatus(enum.StrEnum):
    pending = "pending"
    paid = "paid"
    packed = "packed"
    shipped = "shipped"
    delivered = "delivered"
    cancelled = "cancelled"
    returned = "returned"


class PaymentState(enum.StrEnum):
    unpaid = "unpaid"
    paid = "paid"
    refunding = "refunding"
    refunded = "refunded"
    failed = "failed"


ORDER_STATUS_LABELS: dict[OrderStatus, dict[str, str]] = {
    OrderStatus.pending: {"zh": "待付款", "en": "awaiting payment"},
    OrderStatus.paid: {"zh": "已付款，待发货", "en": "paid, not yet shipped"},
    OrderStatus.packed: {"zh": "已打包，待揽收", "en": "packed, awaiting pickup"},
    OrderStatus.shipped: {"zh": "已发货，运输中", "en": "shipped, in transit"},
    OrderStatus.delivered: {"zh": "已签收", "en": "delivered"},
    OrderStatus.cancelled: {"zh": "已取消", "en": "cancelled"},
    OrderStatus.returned: {"zh": "已退货", "en": "returned"},
}
PAYMENT_STATE_LABELS: dict[PaymentState, dict[str, str]] = {
    PaymentState.unpaid: {"zh": "未付款", "en": "unpaid"},
    PaymentState.paid: {"zh": "已付款", "en": "paid"},
    PaymentState.refunding: {"zh": "退款中", "en": "refund in progress"},
    PaymentState.refunded: {"zh": "已退款", "en": "refunded"},
    PaymentState.failed: {"zh": "付款失败", "en": "payment failed"},
}


class OrderItem(BaseModel):
    sku: str
    name: str
    quantity: int = 1


class Order(BaseModel):
    number: str
    status: OrderStatus
    items: list[OrderItem] = []
    carrier: str | None = None
    tracking_number: str | None = None
    updated_at: dt.datetime | None = None


class Payment(BaseModel):
    state: PaymentState
    amount: str
    currency: str = "CNY"
    paid_at: dt.datetime | None = None


class StockLevel(BaseModel):
    sku: str
    name: str
    available: int


class CrmConnector(Protocol):
    async def order(self, number: str) -> Order | None:
        """The order with this number, or None when the system does not know it."""
        ...

    async def payment(self, number: str) -> Payment | None: ...

    async def stock(self, sku: str) -> StockLevel | None: ...

    async def close(self) -> None: ...


class HttpCrmConnector:
    name = "http"

    def __init__(self, base_url: str, api_key: str | None, *, timeout_seconds: float = 5.0) -> None:
        self.base = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def order(self, number: str) -> Order | None:
        return await self._get(f"/orders/{quote(number, safe='')}", Order)

    async def payment(self, number: str) -> Payment | None:
        return await self._get(f"/orders/{quote(number, safe='')}/payment", Payment)

    async def stock(self, sku: str) -> StockLevel | None:
        return await self._get(f"/stock/{quote(sku, safe='')}", StockLevel)

    async def _get(self, path: str, model: type[M]) -> M | None:
        import aiohttp  # on the first lookup: a deployment without an HTTP CRM never loads it

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_seconds))
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            async with self._session.get(self.base + path, headers=headers) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise CrmUnavailable(f"CRM answered {response.status} for {path}")
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CrmUnavailable(f"CRM unreachable: {type(exc).__name__}: {exc}") from exc
        try:
            body: Any = json.loads(raw)
        except ValueError:
            # It answered, just not with JSON (a proxy's error page): not "unreachable" in the logs.
            raise CrmUnavailable(f"CRM answer for {path} is not JSON: {raw[:80]!r}") from None
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise CrmUnavailable(f"CRM answer for {path} is malformed: {exc.error_count()} errors") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


_DEMO_SKUS = {
    "SKU-PHONE-X1": StockLevel(sku="SKU-PHONE-X1", name="汇流手机 X1 / Huiliu Phone X1", available=0),
    "SKU-EARBUDS": StockLevel(sku="SKU-EARBUDS", name="无线耳机 / Wireless earbuds", available=42),
    "SKU-KETTLE": StockLevel(sku="SKU-KETTLE", name="电热水壶 / Electric kettle", available=7),
}


def _demo_orders() -> dict[str, tuple[Order, Payment]]:
    at = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
    phone = OrderItem(sku="SKU-PHONE-X1", name=_DEMO_SKUS["SKU-PHONE-X1"].name)
    earbuds = OrderItem(sku="SKU-EARBUDS", name=_DEMO_SKUS["SKU-EARBUDS"].name, quantity=2)
    kettle = OrderItem(sku="SKU-KETTLE", name=_DEMO_SKUS["SKU-KETTLE"].name)
    return {
        "12345": (
            Order(
                number="12345",
                status=OrderStatus.shipped,
                items=[earbuds],
                carrier="顺丰速运 SF Express",
                tracking_number="SF1234567890",
                updated_at=at,
            ),
            Payment(state=PaymentState.paid, amount="398.00", paid_at=at),
        ),
        "A12345": (
            Order(number="A12345", status=OrderStatus.paid, items=[phone], updated_at=at),
            Payment(state=PaymentState.paid, amount="3999.00", paid_at=at),
        ),
        "67890": (
            Order(number="67890", status=OrderStatus.pending, items=[kettle], updated_at=at),
            Payment(state=PaymentState.unpaid, amount="129.00"),
        ),
    }


class DemoCrmConnector:
    """Three demo orders (12345 shipped, A12345 paid but its phone out of stock, 67890 unpaid) and their
    stock; ``orders`` / ``stock_levels`` may be replaced to script a test."""

    name = "demo"

    def __init__(self) -> None:
        self.orders = _demo_orders()
        self.stock_levels = dict(_DEMO_SKUS)

    async def order(self, number: str) -> Order | None:
        found = self.orders.get(number.strip().upper())
        return found[0] if found else None

    async def payment(self, number: str) -> Payment | None:
        found = self.orders.get(number.strip().upper())
        return found[1] if found else None

    async def stock(self, sku: str) -> StockLevel | None:
        return self.stock_levels.get(sku)

    async def close(self) -> None:
        return None


def create_crm(settings: Settings) -> CrmConnector:
    """The connector the settings ask for (``HUILIU_CRM_PROVIDER``)."""
    if settings.crm_provider == "http":
        if not settings.crm_http_base_url:
            raise ValueError("HUILIU_CRM_HTTP_BASE_URL is required with HUILIU_CRM_PROVIDER=http")
        key = settings.crm_http_api_key.get_secret_value() if settings.crm_http_api_key else None
        return HttpCrmConnector(settings.crm_http_base_url, key, timeout_seconds=settings.crm_timeout_seconds)
    return DemoCrmConnector()
