"""The SIP front under attack, over loopback: the attacker sends from 127.0.0.2 (not this host, so
Kamailio's flood protection applies to it — the telephony workers and this host itself are exempt).

* sipvicious (Debian ``sipvicious``: svmap, svwar, svcrack) learns nothing: Kamailio drops scanners'
  requests unanswered;
* a scanner disguised as a phone sees the same answer for every user (401 challenge), so registration
  leaks no more than a 401 would;
* guessing passwords is cut off by the per-source rate limit (pike), and a phone with the right password
  registers;
* the node keeps taking calls from everyone else while the attacker is blocked.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.embedded import EmbeddedServer
from telephony import kamailio
from tests.telephony.node import Node, sip_tools_missing, start_node, stop_node

ATTACKER = "127.0.0.2"
FLOOD_REQUESTS = 40  # per 2 s from one source
SECRET = "test-secret-key-not-for-production"  # what start_node gives every process


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, mongo_server: EmbeddedServer, redis_server: EmbeddedServer
) -> Iterator[Node]:
    missing = sip_tools_missing() or (
        None if shutil.which("svmap") else "needs sipvicious (apt-get install sipvicious)"
    )
    assert missing is None, missing
    started = start_node(
        tmp_path_factory.mktemp("sip-security"),
        mongo_server,
        redis_server,
        pool_size=1,
        telephony_flood_requests=str(FLOOD_REQUESTS),
        telephony_phone_auth="true",
    )
    yield started
    stop_node(started)


def phone_password(user: str) -> str:
    return kamailio.phone_password(SECRET, user)


class SipClient:
    """Just enough SIP over UDP to REGISTER (with digest auth) and send OPTIONS from a chosen address."""

    def __init__(self, node: Node, source: str, user_agent: str = "Yealink SIP-T46S 66.86.0.15") -> None:
        self.node = node
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.source, self.port = self.sock.getsockname()
        self.user_agent = user_agent
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, user: str, extra: str = "", call_id: str | None = None) -> str:
        self.cseq += 1
        target = f"sip:127.0.0.1:{self.node.sip_port}"
        message = (
            f"{method} {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.source}:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{user}@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{user}@127.0.0.1>\r\n"
            f"Call-ID: {call_id or uuid.uuid4().hex}\r\n"
            f"CSeq: {self.cseq} {method}\r\n"
            f"Contact: <sip:{user}@{self.source}:{self.port}>\r\n"
            f"User-Agent: {self.user_agent}\r\n"
            "Expires: 60\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        )
        self.sock.sendto(message.encode(), ("127.0.0.1", self.node.sip_port))
        return message

    def reply(self, within: float = 2.0) -> str | None:
        self.sock.settimeout(within)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        return data.decode(errors="replace")

    def register(self, user: str, password: str) -> str | None:
        """REGISTER, answer the digest challenge; the final status line (None: no answer at all)."""
        call_id = uuid.uuid4().hex
        self.request("REGISTER", user, call_id=call_id)
        challenge = self.reply()
        if challenge is None or not challenge.startswith("SIP/2.0 401"):
            return challenge.splitlines()[0] if challenge else None
        realm = re.search(r'realm="([^"]+)"', challenge)
        nonce = re.search(r'nonce="([^"]+)"', challenge)
        assert realm and nonce, challenge
        uri = f"sip:127.0.0.1:{self.node.sip_port}"
        ha1 = hashlib.md5(f"{user}:{realm[1]}:{password}".encode(), usedforsecurity=False).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode(), usedforsecurity=False).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce[1]}:{ha2}".encode(), usedforsecurity=False).hexdigest()
        header = (
            f'Authorization: Digest username="{user}", realm="{realm[1]}", nonce="{nonce[1]}", '
            f'uri="{uri}", response="{response}", algorithm=MD5\r\n'
        )
        self.request("REGISTER", user, header, call_id=call_id)
        final = self.reply()
        return final.splitlines()[0] if final else None


def run_tool(*args: str, timeout: float = 90) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr


def kamailio_log(node: Node) -> str:
    return (node.data_dir / "log" / "kamailio.log").read_text(errors="replace")


def test_sipvicious_scans_learn_nothing(node: Node) -> None:
    port = str(node.sip_port)
    found = run_tool("svmap", "-b", ATTACKER, "-p", port, "127.0.0.1")
    assert "127.0.0.1:" + port not in found, found
    assert re.search(r"found nothing|no sip device", found, re.IGNORECASE), found
    extensions = run_tool("svwar", "-b", ATTACKER, "-p", port, "-e", "100-120,1000", "127.0.0.1", timeout=120)
    assert not re.search(r"\|\s*(100\d|1[01]\d)\s*\|", extensions), extensions
    guesses = run_tool("svcrack", "-b", ATTACKER, "-p", port, "-u", "1000", "-r", "1000-1050", "127.0.0.1")
    assert "password" not in guesses.lower().replace("no password", ""), guesses


def test_registration_answers_every_user_alike(node: Node) -> None:
    client = SipClient(node, ATTACKER)
    try:
        answers = set()
        for user in ("agent1", "1000", "admin", "nobody-here-42"):
            client.request("REGISTER", user)
            reply = client.reply()
            assert reply is not None, user
            status = reply.splitlines()[0]
            # same status and the same headers apart from the per-request ones
            headers = sorted(
                line.split(":", 1)[0] for line in reply.split("\r\n\r\n", 1)[0].splitlines()[1:] if line
            )
            answers.add((status, tuple(headers)))
        assert len(answers) == 1 and next(iter(answers))[0].startswith("SIP/2.0 401"), answers
    finally:
        client.close()


def test_the_right_password_registers_and_a_wrong_one_does_not(node: Node) -> None:
    client = SipClient(node, "127.0.0.3")
    try:
        assert client.register("8001", "not-the-password") in (
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 403 Forbidden",
        )
        assert client.register("8001", phone_password("8001")) == "SIP/2.0 200 OK"
    finally:
        client.close()


def test_password_guessing_is_cut_off_while_everyone_else_is_served(node: Node) -> None:
    attacker = SipClient(node, "127.0.0.4")
    try:
        for guess in range(150):  # a burst of guesses, as fast as a script sends them
            attacker.request("REGISTER", "8002", call_id=f"guess-{guess}")
        answered = 0
        while attacker.reply(within=0.3) is not None:
            answered += 1
        assert answered <= 2 * FLOOD_REQUESTS, f"{answered} of 150 guesses were answered"
        assert "pike: dropping REGISTER from 127.0.0.4" in kamailio_log(node)
        # the blocked source gets nothing, even with the right password
        assert attacker.register("8002", phone_password("8002")) is None
    finally:
        attacker.close()
    # callers elsewhere are served meanwhile: a real call to the demo line connects
    run = node.sipp("ivr_dtmf.xml", caller="13700000009", pause_ms=500, digit="1")
    assert run.successful == 1, run.output[-2000:]
    # and once the attacker stops, pike forgets it
    time.sleep(6)
    later = SipClient(node, "127.0.0.4")
    try:
        assert later.register("8002", phone_password("8002")) == "SIP/2.0 200 OK"
    finally:
        later.close()


def test_the_scans_left_the_node_whole(node: Node) -> None:
    assert node.process.poll() is None
    assert Path(node.data_dir / "log" / "kamailio.log").exists()
