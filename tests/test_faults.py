"""A dependency that goes away: requests fail fast with 503 + Retry-After, the process stays up, and it all
works again when the dependency is back, with nothing accepted lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from core.app import build_app
from core.embedded import EmbeddedServer, free_port, start_mongo
from core.settings import load_settings
from tests.conftest import ApiClient, wait_until_ready


@pytest.fixture
async def own_mongo(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedServer, Path]]:
    """A MongoDB server only this test stops and starts."""
    data = tmp_path / "mongo"
    server = start_mongo(data, free_port(), tmp_path / "mongo.log")
    yield server, data
    server.stop()


async def test_mongodb_down_gives_503_then_recovers(
    own_mongo, redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    mongo, data = own_mongo
    settings = load_settings(
        environ={},
        mongo_url=mongo.url,
        redis_url=redis_server.url,
        db_name=f"f_{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "var",
        mongo_timeout_ms=500,
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        await wait_until_ready(base)
        async with aiohttp.ClientSession() as session:
            agent = await ApiClient(session, base).as_user("agent1", "agent1-demo")
            status, accepted, _ = await agent.request(
                "POST",
                "/api/customers/resolve",
                json={"identities": [{"kind": "phone", "value": "13800138000"}]},
            )
            assert status == 201
            customer_id = accepted["customer"]["id"]
            await agent.request(
                "POST",
                f"/api/customers/{customer_id}/timeline",
                json={"kind": "note.added", "channel": "internal", "idempotency_key": "before"},
            )

            mongo.stop()
            status, body, headers = await agent.request("GET", f"/api/customers/{customer_id}/timeline")
            assert status == 503 and body["code"] == "mongodb_unavailable"
            assert headers["Content-Type"].startswith("application/problem+json")
            assert int(headers["Retry-After"]) > 0
            status, health, _ = await agent.request("GET", "/healthz")
            assert status == 503 and health["down"] == ["mongodb"]

            restarted = start_mongo(data, mongo.port, tmp_path / "mongo2.log")
            mongo.process = restarted.process  # so the fixture stops the new one
            for _ in range(100):
                status, page, _ = await agent.request("GET", f"/api/customers/{customer_id}/timeline")
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200
            assert [e["idempotency_key"] for e in page["events"]] == ["before"]
            status, health, _ = await agent.request("GET", "/healthz")
            assert status == 200
    finally:
        await server.close()


async def test_web_process_starts_while_mongodb_is_down_and_becomes_ready(
    redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    port = free_port()
    settings = load_settings(
        environ={},
        mongo_url=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        redis_url=redis_server.url,
        db_name="late",
        data_dir=tmp_path / "var",
        mongo_timeout_ms=300,
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    mongo = None
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/healthz") as response:
                health = await response.json()
            assert response.status == 503 and "mongodb" in health["down"]
            mongo = start_mongo(tmp_path / "late-mongo", port)
            await wait_until_ready(base, within=40)
            await ApiClient(session, base).as_user("admin", "admin-demo")
    finally:
        await server.close()
        if mongo is not None:
            mongo.stop()
