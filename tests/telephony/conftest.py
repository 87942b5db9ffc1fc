"""Fixtures: one telephony node (Kamailio + a pool of two pjsua2 workers) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.embedded import EmbeddedServer
from tests.telephony.node import Node, sip_tools_missing, start_node, stop_node


@pytest.fixture(scope="module")
def node(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    running = start_node(tmp_path_factory.mktemp("telephony"), mongo_server, redis_server)
    yield running
    stop_node(running)
