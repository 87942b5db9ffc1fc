"""Real pjsua2 phones (tests/telephony/peer.py) against a telephony node, for the softphone's call-control
tests: the node fixture (Kamailio + one pjsua2 worker on the test's MongoDB and Redis), the web
application's settings on the node's database, phones running in the background, and small waits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from core.embedded import EmbeddedServer
from core.settings import Settings, load_settings
from tests.conftest import ApiClient
from tests.telephony.node import PEER, Node, sip_tools_missing, start_node, stop_node

PARKED_LINE = "5000"  # tests/telephony/routers.py: answers and waits for the caller to hang up


@pytest.fixture(scope="module", name="node")
def node_fixture(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    running = start_node(tmp_path_factory.mktemp("telephony"), mongo_server, redis_server, pool_size=1)
    yield running
    stop_node(running)


@pytest.fixture(name="settings")
def settings_fixture(
    node: Node, mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path: Path
) -> Settings:
    """The web application on the telephony node's database (the ``server`` fixture drops it afterwards;
    the node's worker writes its heartbeat again within half a second)."""
    return load_settings(
        environ={},
        mongo_url=mongo_server.url,
        redis_url=redis_server.url,
        db_name=node.db_name,
        data_dir=tmp_path / "var",
        secret_key="test-secret-key-not-for-production",
        mongo_timeout_ms=1500,
    )


class Phone:
    """A pjsua2 phone (peer.py) running in the background; ``result()`` waits for its JSON report."""

    def __init__(self, node: Node, *args: str, seconds: float) -> None:
        self.workdir = node.workdir / f"phone-{uuid.uuid4().hex[:8]}"
        self.workdir.mkdir()
        self.seconds = seconds
        self.process = subprocess.Popen(
            [sys.executable, str(PEER), "--workdir", str(self.workdir), "--seconds", str(seconds), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def listening(self) -> None:
        """Wait until it answers calls (registered at the SIP front); pjlib's start-up lines come first."""
        assert self.process.stdout is not None
        seen = ""
        while (line := await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 20)) != "":
            if line.strip() == "listening":
                return
            seen += line
        _, err = self.process.communicate()
        raise AssertionError(f"the phone did not start:\n{seen}\n{err[-3000:]}")

    async def result(self) -> dict[str, Any]:
        out, err = await asyncio.to_thread(self.process.communicate, None, self.seconds + 30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"the phone failed ({self.process.returncode}):\n{out}\n{err[-3000:]}"
        report: dict[str, Any] = json.loads(lines[-1])
        return report

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture(name="phones")
async def phones_fixture() -> AsyncIterator[list[Phone]]:
    started: list[Phone] = []
    yield started
    for phone in started:
        phone.stop()


def mobile() -> str:
    """A fresh mobile number per test (a new customer), national format."""
    return "139" + str(uuid.uuid4().int)[:8]


async def until(node: Node, predicate: Any, within: float = 15.0, what: str = "condition") -> Any:
    return await asyncio.to_thread(node.wait_for, predicate, within, what)


def contact_status(node: Node, contact_id: str) -> str | None:
    doc = node.mongo().queue_contacts.find_one({"_id": ObjectId(contact_id)}, {"status": 1})
    return str(doc["status"]) if doc else None


async def post(client: ApiClient, path: str, body: Any = None) -> tuple[int, Any]:
    status, data, _ = await client.request("POST", path, json=body)
    return status, data


async def go_available(client: ApiClient) -> None:
    status, agent, _ = await client.request("PUT", "/api/desktop/me/state", json={"state": "available"})
    assert status == 200, agent
