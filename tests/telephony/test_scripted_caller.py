"""The scripted caller (``python -m telephony.caller``, what ``huiliu demo traffic`` places its calls with)
against the shipped IVR (``ivr_flows/flows/main.yaml``, opened around the clock by an office-hours
override) on a real node.

Its keys go as RFC 2833 telephone-events by default, as a phone's or a trunk's do, and the IVR takes them;
no SIP INFO crosses the SIP front meanwhile (Kamailio's own request counters say so). ``--dtmf-method
info`` still works for endpoints that need it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.embedded import EmbeddedServer
from telephony.kamailio import Kamailio
from tests.telephony.node import Node, open_main_line, sip_tools_missing, start_node, stop_node
from tests.telephony.peer import rms

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def main_line(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    db_name = f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(open_main_line(mongo_server.url, db_name))
    node = start_node(
        tmp_path_factory.mktemp("scripted-caller"),
        mongo_server,
        redis_server,
        pool_size=1,
        db_name=db_name,
        telephony_router="ivr_flows.line:router",
    )
    yield node
    stop_node(node)


def scripted_call(node: Node, caller: str, *args: str, seconds: float) -> dict[str, Any]:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "telephony.caller", "--target", f"sip:4008001234@{node.front}"),
            *("--caller", caller, "--seconds", str(seconds), *args),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the caller failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-3000:]}"
    outcome: dict[str, Any] = json.loads(lines[-1])
    return outcome


def front(node: Node) -> Kamailio:
    """A handle on the node's running Kamailio, for its control socket."""
    run = node.data_dir.resolve() / "telephony"
    return Kamailio(
        workdir=run, listen="127.0.0.1", port=node.sip_port, list_path=run / "dispatcher.list", log_path=run
    )


def info_requests(node: Node) -> int:
    """SIP INFO requests the SIP front has received (in-dialog requests cross it: it record-routes)."""
    reply = front(node).rpc("stats.get_statistics", "rcv_requests_info")  # "core:rcv_requests_info = 0"
    return int(reply.rsplit("=", 1)[1])


def walked(node: Node, caller: str) -> list[tuple[str, str]]:
    calls = node.calls_from("+86" + caller)
    assert len(calls) == 1, calls
    call_id = calls[0]["_id"]
    events = node.wait_for(
        lambda: (found := node.events(call_id)) and "call.ended" in {e["kind"] for e in found} and found,
        within=20,
        what="call.ended",
    )
    return [(e["body"]["node"], e["body"]["result"]) for e in events if e["kind"] == "ivr.step"]


def test_the_scripted_caller_navigates_the_shipped_menu_by_rfc2833(main_line: Node, tmp_path: Path) -> None:
    node = main_line
    heard = tmp_path / "heard.wav"
    infos_before = info_requests(node)
    caller = "139" + str(uuid.uuid4().int)[:8]
    # 9 (English) during the Mandarin menu; 2 (order status) in the English one; an order number
    outcome = scripted_call(
        node, caller, "--keys", "9@5", "--keys", "2@13", "--keys", "12345#@20", "--record", str(heard),
        seconds=26,
    )  # fmt: skip
    assert outcome["answered"] and outcome["dtmf_method"] == "rfc2833", outcome

    path = walked(node, caller)
    assert path[:4] == [
        ("office_hours", "open"),
        ("greeting", "played"),
        ("main_menu", "chose 9"),
        ("english", "set"),
    ], path
    assert ("main_menu", "chose 2") in path, path
    order_status = path[path.index(("main_menu", "chose 2")) + 1 :]
    assert order_status and order_status[0] == ("order_status", "collected"), path
    assert info_requests(node) == infos_before, "keys went as SIP INFO, not RFC 2833"
    level, seconds = rms(heard)
    assert seconds >= 20 and level > 300, f"the caller did not hear the prompts: {level:.0f} RMS, {seconds} s"


def test_the_scripted_caller_can_still_send_sip_info(main_line: Node) -> None:
    node = main_line
    infos_before = info_requests(node)
    caller = "139" + str(uuid.uuid4().int)[:8]
    outcome = scripted_call(node, caller, "--dtmf-method", "info", "--keys", "9@5", seconds=9)
    assert outcome["dtmf_method"] == "info", outcome
    assert ("main_menu", "chose 9") in walked(node, caller)
    assert info_requests(node) > infos_before
