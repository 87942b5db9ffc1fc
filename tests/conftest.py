"""Shared fixtures: real embedded MongoDB (SecantusDB) and redis-server on free loopback ports, and the
real web application served over TCP. Each test has its own database: tests never see each other's data."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from core.app import build_app
from core.db import Database
from core.embedded import EmbeddedServer, free_port, start_mongo, start_redis
from core.settings import Settings, load_settings

pytest_plugins = ["tests.hang_watch"]


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    root = tmp_path_factory.mktemp("mongo")
    server = start_mongo(root / "data", free_port(), root / "mongo.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    root = tmp_path_factory.mktemp("redis")
    server = start_redis(root / "data", free_port(), root / "redis.log")
    yield server
    server.stop()


@pytest.fixture
def settings(mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path: Path) -> Settings:
    return load_settings(
        environ={},
        mongo_url=mongo_server.url,
        redis_url=redis_server.url,
        db_name=f"t_{uuid.uuid4().hex[:12]}",
        data_dir=tmp_path / "var",
        secret_key="test-secret-key-not-for-production",
        mongo_timeout_ms=1500,
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    assert settings.mongo_url is not None
    database = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
    await database.prepare()
    yield database
    await database.client.drop_database(settings.db_name)
    await database.close()


class ApiClient:
    """A logged-in (or anonymous) HTTP client against the running test server."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None = None) -> None:
        self.session = session
        self.base = base
        self.token = token

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        headers = dict(kwargs.pop("headers", {}))
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as response:
            text = await response.text()
            body: Any = None
            if text and "json" in response.content_type:
                import json

                body = json.loads(text)
            return response.status, body if body is not None else text, dict(response.headers)

    async def as_user(self, username: str, password: str) -> ApiClient:
        status, body, _ = await self.request(
            "POST", "/api/auth/login", json={"username": username, "password": password}
        )
        assert status == 200, body
        return ApiClient(self.session, self.base, body["token"])


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    """The real web application on a free loopback port, demo users seeded."""
    app = build_app(settings.model_copy(update={"demo": True}))
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    await wait_until_ready(str(test_server.make_url("/")))
    yield test_server
    await test_server.close()
    assert settings.mongo_url is not None
    database = Database.connect(settings.mongo_url, settings.db_name)
    await database.client.drop_database(settings.db_name)
    await database.close()


async def wait_until_ready(base: str, within: float = 30.0) -> None:
    """Wait until /healthz is green: indexes, migrations and demo users are prepared in the background."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            try:
                async with session.get(base.rstrip("/") + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{base} did not become healthy within {within} s")


@pytest.fixture
async def http(server: TestServer) -> AsyncIterator[ApiClient]:
    async with aiohttp.ClientSession() as session:
        yield ApiClient(session, str(server.make_url("")).rstrip("/"))


@pytest.fixture
async def admin(http: ApiClient) -> ApiClient:
    return await http.as_user("admin", "admin-demo")


@pytest.fixture
async def supervisor(http: ApiClient) -> ApiClient:
    return await http.as_user("supervisor", "supervisor-demo")


@pytest.fixture
async def agent(http: ApiClient) -> ApiClient:
    return await http.as_user("agent1", "agent1-demo")
