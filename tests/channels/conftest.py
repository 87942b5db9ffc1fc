"""Channel tests: the real web app with an SMS webhook secret and a WeChat account configured, and
clients that sign requests exactly the way the SMS gateway and the WeChat platform do."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr
from wechatpy.crypto import WeChatCrypto

from asr.nlu import default_analyzer
from core.settings import Settings
from omnichannel.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import ApiClient

SMS_SECRET = "gateway-webhook-secret"
WECHAT_TOKEN = "huiliu-wechat-token"
WECHAT_APP_ID = "wx0123456789abcdef"
WECHAT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeChat issues them
SERVICE_ACCOUNT = "gh_huiliu_demo"


@pytest.fixture(scope="session", autouse=True)
def warm_analyzer() -> None:
    """The NLU model loads once per process (seconds); load it before the clock of any test starts."""
    default_analyzer().analyze("你好")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "sms_webhook_secret": SecretStr(SMS_SECRET),
            "sms_delivery": "inline",
            "sms_retry_backoff_seconds": 0.1,
            "wechat_token": SecretStr(WECHAT_TOKEN),
            "wechat_app_id": WECHAT_APP_ID,
            "wechat_encoding_aes_key": SecretStr(WECHAT_AES_KEY),
        }
    )


async def post_sms_webhook(
    http: ApiClient, path: str, payload: dict[str, Any], *, secret: str = SMS_SECRET, age: int = 0
) -> tuple[int, Any, dict[str, str]]:
    """POST ``payload`` signed as the gateway signs: HMAC-SHA256 over ``<timestamp>.<raw body>``."""
    raw = json.dumps(payload, ensure_ascii=False).encode()
    timestamp = int(time.time()) - age
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, raw),
    }
    return await http.request("POST", path, data=raw, headers=headers)


def wechat_signature(token: str, *parts: str) -> str:
    """WeChat's signature: SHA-1 of the token, timestamp and nonce (and, in safe mode, the ciphertext),
    sorted and concatenated."""
    return hashlib.sha1("".join(sorted([token, *parts])).encode()).hexdigest()


def wechat_query(token: str = WECHAT_TOKEN, **extra: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    nonce = "".join(secrets.choice(string.digits) for _ in range(10))
    return {
        "signature": wechat_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        **extra,
    }


def wechat_text(openid: str, text: str, msg_id: str) -> str:
    return wechat_xml(openid, "text", msg_id, f"<Content><![CDATA[{text}]]></Content>")


def wechat_xml(openid: str, msg_type: str, msg_id: str | None, inner: str, created: int | None = None) -> str:
    msg_id_xml = f"<MsgId>{msg_id}</MsgId>" if msg_id else ""
    return (
        f"<xml><ToUserName><![CDATA[{SERVICE_ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{created or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>{inner}{msg_id_xml}</xml>"
    )


async def post_wechat(http: ApiClient, xml: str, *, aes: bool = False) -> tuple[int, Any, dict[str, str]]:
    """POST ``xml`` to the callback as the platform does: signed query; in safe mode encrypted with the
    account's EncodingAESKey and signed over the ciphertext too (msg_signature)."""
    query = wechat_query()
    body = xml
    if aes:
        crypto = WeChatCrypto(WECHAT_TOKEN, WECHAT_AES_KEY, WECHAT_APP_ID)
        envelope = crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
        encrypted = envelope.split("<Encrypt><![CDATA[")[1].split("]]></Encrypt>")[0]
        body = (
            f"<xml><ToUserName><![CDATA[{SERVICE_ACCOUNT}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        query["encrypt_type"] = "aes"
        query["msg_signature"] = wechat_signature(WECHAT_TOKEN, query["timestamp"], query["nonce"], encrypted)
    return await http.request(
        "POST", "/api/wechat/callback", params=query, data=body.encode(), headers={"Content-Type": "text/xml"}
    )


def decrypt_reply(text: str, query_nonce: str | None = None) -> str:
    """A passive reply in safe mode, decrypted the way the platform checks it."""
    crypto = WeChatCrypto(WECHAT_TOKEN, WECHAT_AES_KEY, WECHAT_APP_ID)
    signature = text.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    timestamp = text.split("<TimeStamp>")[1].split("</TimeStamp>")[0]
    nonce = text.split("<Nonce><![CDATA[")[1].split("]]>")[0]
    plain: str = crypto.decrypt_message(text, signature, timestamp, nonce)
    return plain


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


async def customer_with(admin: ApiClient, kind: str, value: str) -> dict[str, Any]:
    status, body, _ = await admin.request(
        "POST", "/api/customers/resolve", json={"identities": [{"kind": kind, "value": value}]}
    )
    assert status in (200, 201), body
    customer: dict[str, Any] = body["customer"]
    return customer


async def timeline_kinds(admin: ApiClient, customer_id: str) -> list[str]:
    """The customer's timeline, oldest first, as event kinds."""
    status, page, _ = await admin.request("GET", f"/api/customers/{customer_id}/timeline?limit=100")
    assert status == 200, page
    return [event["kind"] for event in reversed(page["events"])]


async def timeline(admin: ApiClient, customer_id: str) -> list[dict[str, Any]]:
    status, page, _ = await admin.request("GET", f"/api/customers/{customer_id}/timeline?limit=100")
    assert status == 200, page
    return list(reversed(page["events"]))
