"""Production deployment files: docker-compose.yml, Dockerfile, .dockerignore and the Kamailio SIP front.

The compose file is checked by a real Compose implementation (`docker-compose config -q`, Debian's
docker-compose package) and the Kamailio config by Kamailio itself, both parsing it (`kamailio -c`) and
running it briefly on a free loopback port to answer real SIP requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
KAMAILIO_DIR = REPO / "telephony" / "kamailio"
KAMAILIO_CFG = KAMAILIO_DIR / "kamailio.cfg"
DISPATCHER_LIST = KAMAILIO_DIR / "dispatcher.list"

EXPECTED_SERVICES = {"mongo", "redis", "web", "kamailio", "telephony", "worker", "beat"}
ONE_SHOT_SERVICES = {"mongo-init"}
APP_ROLES = {"web": "web", "telephony": "telephony", "worker": "worker", "beat": "beat", "email": "email"}
DUMMY_SECRET = "compose-test-secret-0123456789abcdef"


# ----------------------------------------------------------------------------------------- helpers


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose().get("services")
    assert isinstance(services, dict), "docker-compose.yml has no services mapping"
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {name: value for name, value in pairs}
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} against ``variables``; $$ is a literal $."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        current = variables.get(name, "")
        if op == ":?" and not current:
            raise AssertionError(f"{name} is required: {arg}")
        if op == ":-" and not current:
            return arg
        return current

    pattern = r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}"
    return re.sub(pattern, replace, value.replace("$$", "\0")).replace("\0", "$")


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if isinstance(command, str):
        return command.split()
    return [str(part) for part in command or []]


def _compose_cli() -> list[str] | None:
    binary = shutil.which("docker-compose")
    if binary:
        return [binary]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


def _clean_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("HUILIU_")}
    env.update(extra)
    return env


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, heredoc bodies skipped."""
    instructions: list[tuple[str, str]] = []
    lines = iter(DOCKERFILE.read_text().splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\"):
            following = next(lines, "").strip()
            line = line[:-1].rstrip() + " " + ("" if following.startswith("#") else following)
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
        heredoc = re.search(r"<<-?'?\"?([A-Za-z_]+)'?\"?", rest)
        if heredoc and word.upper() in {"RUN", "COPY"}:
            terminator = heredoc.group(1)
            for body in lines:
                if body.strip() == terminator:
                    break
    return instructions


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in _dockerfile_instructions():
        if word == "FROM":
            match = re.match(r"(\S+)\s+AS\s+(\S+)$", rest, re.IGNORECASE)
            assert match, f"every stage must be named: FROM {rest}"
            current = stages.setdefault(match.group(2).lower(), [])
        assert current is not None or word in {"ARG"}, f"{word} before the first FROM"
        if current is not None:
            current.append((word, rest))
    return stages


# ----------------------------------------------------------------------------------- compose file


def test_compose_file_is_valid_for_compose() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose implementation: apt-get install -y --no-install-recommends docker-compose")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO,
        env=_clean_env(HUILIU_SECRET_KEY=DUMMY_SECRET),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout


def test_compose_refuses_to_start_without_secret_key() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose implementation: apt-get install -y --no-install-recommends docker-compose")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "set HUILIU_SECRET_KEY" in result.stderr + result.stdout


def test_compose_declares_every_service_with_health_checks_and_restart() -> None:
    services = _services()
    missing = EXPECTED_SERVICES - set(services)
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        health = service.get("healthcheck")
        assert isinstance(health, dict), f"{name}: no healthcheck"
        assert not health.get("disable"), f"{name}: healthcheck disabled"
        test = health.get("test")
        assert test and test != ["NONE"], f"{name}: empty healthcheck"
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, (
            f"{name}: no restart policy"
        )


def test_mongo_is_a_replica_set_that_initiates_itself() -> None:
    services = _services()
    mongo = services["mongo"]
    assert str(mongo.get("image", "")).startswith("mongo:7")
    command = _command(mongo)
    assert "--replSet" in command and command[command.index("--replSet") + 1] == "rs0", command
    assert "--bind_ip_all" in command
    init_texts = [json.dumps(mongo.get("healthcheck", {}))]
    if "mongo-init" in services:
        init_texts.append(json.dumps(services["mongo-init"]))
    assert any("rs.initiate" in text for text in init_texts), "nothing runs rs.initiate()"
    assert any("mongo-data:" in str(volume) for volume in mongo.get("volumes", []))


def test_redis_appends_only_and_is_pinged() -> None:
    redis = _services()["redis"]
    assert str(redis.get("image", "")).startswith("redis:7")
    assert "--appendonly" in _command(redis)
    assert "redis-cli" in json.dumps(redis["healthcheck"]["test"]) and "ping" in json.dumps(
        redis["healthcheck"]["test"]
    )


@pytest.mark.parametrize("name", sorted(APP_ROLES))
def test_huiliu_services_get_the_shared_settings(name: str) -> None:
    service = _services()[name]
    assert _command(service)[-1] == APP_ROLES[name] or _command(service) == ["huiliu", APP_ROLES[name]]
    env = _environment(service)
    mongo_url = env.get("HUILIU_MONGO_URL", "")
    assert mongo_url.startswith("mongodb://mongo:27017") and "replicaSet=rs0" in mongo_url, mongo_url
    assert env.get("HUILIU_REDIS_URL", "").startswith("redis://redis:6379"), env.get("HUILIU_REDIS_URL")
    assert env.get("HUILIU_SECRET_KEY", "").startswith("${HUILIU_SECRET_KEY:?"), "secret key must be required"
    assert env.get("HUILIU_DEMO") == "false"
    assert env.get("HUILIU_LOG_FORMAT") == "json"
    assert env.get("HUILIU_WEB_HOST") == "0.0.0.0"
    for dependency in ("mongo", "redis"):
        condition = (service.get("depends_on") or {}).get(dependency, {}).get("condition")
        assert condition == "service_healthy", f"{name} must wait for a healthy {dependency}"
    mounts = " ".join(str(volume) for volume in service.get("volumes", []))
    assert "var:" in mounts and "recordings:" in mounts


@pytest.mark.parametrize("name", sorted(APP_ROLES))
def test_huiliu_service_environment_is_accepted_by_settings(name: str) -> None:
    """Unknown HUILIU_* variables stop the processes at start-up, so the compose env must load cleanly."""
    env = {
        key: _interpolate(value, {"HUILIU_SECRET_KEY": DUMMY_SECRET})
        for key, value in _environment(_services()[name]).items()
    }
    settings = load_settings(environ=env)
    assert isinstance(settings, Settings)
    assert settings.demo is False
    assert settings.secret() == DUMMY_SECRET
    assert settings.mongo_url is not None and "replicaSet=rs0" in settings.mongo_url


def test_shared_settings_are_written_once() -> None:
    text = COMPOSE_FILE.read_text()
    assert "x-huiliu: &huiliu" in text
    assert text.count("HUILIU_MONGO_URL:") == 1, "the shared environment is copy-pasted instead of anchored"
    assert text.count("<<: *huiliu") == len(APP_ROLES)


def test_compose_declares_volumes_and_sip_front() -> None:
    compose = _compose()
    assert {"mongo-data", "redis-data", "recordings", "var"} <= set(compose.get("volumes") or {})
    kamailio = compose["services"]["kamailio"]
    ports = {str(port) for port in kamailio.get("ports", [])}
    assert {"5060:5060/udp", "5060:5060/tcp"} <= ports, ports
    mounts = " ".join(str(volume) for volume in kamailio.get("volumes", []))
    assert "./telephony/kamailio/kamailio.cfg:" in mounts
    assert kamailio.get("build", {}).get("target") == "kamailio"
    assert (kamailio.get("depends_on") or {}).get("telephony", {}).get("condition") == "service_healthy"
    web_ports = {str(port) for port in compose["services"]["web"].get("ports", [])}
    assert "8080:8080" in web_ports
    assert "/healthz" in json.dumps(compose["services"]["web"]["healthcheck"]["test"])


# -------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_pjsip_and_runs_huiliu() -> None:
    stages = _stages()
    assert {"pjsip", "runtime"} <= set(stages), f"stages: {sorted(stages)}"
    assert list(stages)[-1] == "runtime", "runtime must be the last (default) stage"

    runtime = stages["runtime"]
    entrypoints = [rest for word, rest in runtime if word == "ENTRYPOINT"]
    assert entrypoints, "runtime stage has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["huiliu"]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1] not in {"root", "0"}, "runtime must not run as root"
    runtime_text = "\n".join(f"{word} {rest}" for word, rest in runtime)
    assert "python:3.11-slim-bookworm" in runtime_text or "${PYTHON_VERSION}-slim-bookworm" in runtime_text
    assert "pip install -r requirements.lock" in runtime_text
    assert "pip install --no-deps" in runtime_text
    assert "--from=pjsip" in runtime_text
    assert "espeak-ng" in runtime_text and "sox" in runtime_text

    pjsip_text = "\n".join(f"{word} {rest}" for word, rest in stages["pjsip"])
    assert "libssl-dev" in pjsip_text and "swig" in pjsip_text
    assert "PJSIP_VERSION=2.15.1" in pjsip_text
    max_calls = re.search(r"#define\s+PJSUA_MAX_CALLS\s+(\d+)", DOCKERFILE.read_text())
    assert max_calls and int(max_calls.group(1)) > 4, "PJSUA_MAX_CALLS must be raised above pjsua's 4"


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    entries = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for required in (".venv", "var", ".git", ".pytest_cache", ".mypy_cache"):
        assert required in entries, f".dockerignore misses {required}"
    for anywhere in ("__pycache__", "node_modules"):
        assert anywhere in entries or f"**/{anywhere}" in entries, f".dockerignore misses {anywhere}"


# ---------------------------------------------------------------------------------------- Kamailio

kamailio_required = pytest.mark.skipif(
    shutil.which("kamailio") is None, reason="kamailio not installed (apt-get install -y kamailio)"
)


def _kamailio_check(*defines: str) -> subprocess.CompletedProcess[str]:
    args = ["kamailio", "-c", "-f", str(KAMAILIO_CFG)]
    for define in defines:
        args += ["-A", define]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@kamailio_required
@pytest.mark.parametrize(
    "defines",
    [
        (),
        ("WITH_AUTH",),
        ("ADVERTISE_ADDR=203.0.113.7", "SIP_DOMAIN=sip.example.com", "LISTEN_ADDR=lo", "SIP_PORT=5999"),
        ('DISPATCHER_LIST="/tmp/huiliu-dispatcher.list"', "PIKE_REQS=50", "CHILDREN=2"),
    ],
    ids=["defaults", "auth", "nat", "overrides"],
)
def test_kamailio_config_is_valid(defines: tuple[str, ...]) -> None:
    result = _kamailio_check(*defines)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "config file ok" in output


@kamailio_required
def test_kamailio_check_rejects_a_broken_config(tmp_path: Path) -> None:
    """Guards the test above: `kamailio -c` must really fail on an unknown function."""
    broken = tmp_path / "broken.cfg"
    broken.write_text(KAMAILIO_CFG.read_text().replace("ds_select_dst(", "ds_select_dest(", 1))
    result = subprocess.run(
        ["kamailio", "-c", "-f", str(broken)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0


def test_kamailio_config_loads_the_modules_it_needs() -> None:
    text = KAMAILIO_CFG.read_text()
    modules = set(re.findall(r'^loadmodule\s+"(\w+)\.so"', text, re.MULTILINE))
    wanted = {"sl", "tm", "rr", "pv", "maxfwd", "textops", "siputils", "xlog", "sanity", "dispatcher"}
    wanted |= {"pike", "usrloc", "registrar"}
    assert wanted <= modules, f"missing modules: {sorted(wanted - modules)}"
    for define in ("LISTEN_ADDR", "SIP_PORT", "DISPATCHER_LIST", "PIKE_REQS"):
        assert f"#!ifndef {define}" in text, f"{define} is not overridable"


def test_dispatcher_list_points_set_1_at_telephony_workers() -> None:
    destinations = []
    for line in DISPATCHER_LIST.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        setid, uri, *_ = line.split()
        assert setid == "1", line
        assert re.fullmatch(r"sip:[\w.-]+:\d+", uri), line
        destinations.append(uri)
    assert destinations, "dispatcher.list has no destinations"
    assert len(set(destinations)) == len(destinations)


def _free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Kamailio:
    def __init__(self, port: int, ctl: str, process: subprocess.Popen[str]) -> None:
        self.port = port
        self.ctl = ctl
        self.process = process

    def rpc(self, *command: str) -> str:
        result = subprocess.run(
            ["kamcmd", "-s", self.ctl, *command], capture_output=True, text=True, timeout=10, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def request(self, method: str, user: str, extra_headers: str = "") -> str:
        """Send one SIP request over UDP from loopback; return the first final (>=200) response."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.connect(("127.0.0.1", self.port))
            local = sock.getsockname()[1]
            call_id = uuid.uuid4().hex
            uri = f"sip:127.0.0.1:{self.port}"
            message = (
                f"{method} {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:{user}@127.0.0.1:{self.port}>;tag={call_id[:10]}\r\n"
                f"To: <sip:{user}@127.0.0.1:{self.port}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
                f"Contact: <sip:{user}@127.0.0.1:{local}>\r\nMax-Forwards: 70\r\n"
                f"{extra_headers}Content-Length: 0\r\n\r\n"
            )
            sock.send(message.encode())
            while True:
                response = sock.recv(65535).decode()
                code = int(response.split(" ", 2)[1])
                if code >= 200:
                    return response


def _start_kamailio(tmp_path: Path, *defines: str, env: dict[str, str] | None = None) -> Kamailio:
    port = _free_port()
    ctl = f"unix:{tmp_path / 'kamailio.ctl'}"
    args = ["kamailio", "-DD", "-E", "-m", "32", "-M", "4", "-w", str(REPO), "-f", str(KAMAILIO_CFG)]
    for define in (
        f"SIP_PORT={port}",
        f'CTL_SOCKET="{ctl}"',
        f'DISPATCHER_LIST="{DISPATCHER_LIST}"',
        "CHILDREN=1",
        *defines,
    ):
        args += ["-A", define]
    log = (tmp_path / "kamailio.log").open("w")
    process = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(**(env or {})),
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"kamailio exited:\n{(tmp_path / 'kamailio.log').read_text()}")
        probe = subprocess.run(["kamcmd", "-s", ctl, "core.uptime"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            return Kamailio(port, ctl, process)
        time.sleep(0.1)
    _stop(process)
    raise AssertionError(f"kamailio did not start:\n{(tmp_path / 'kamailio.log').read_text()}")


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM; Kamailio's exit_timeout (5 s) ends a stuck shutdown, SIGKILL to the group is the backstop."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        raise AssertionError("kamailio ignored SIGTERM for 10 s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    if shutil.which("kamailio") is None or shutil.which("kamcmd") is None:
        pytest.skip("kamailio not installed (apt-get install -y kamailio)")
    server = _start_kamailio(tmp_path)
    yield server
    _stop(server.process)


@pytest.fixture
def kamailio_with_auth(tmp_path: Path) -> Iterator[Kamailio]:
    if shutil.which("kamailio") is None or shutil.which("kamcmd") is None:
        pytest.skip("kamailio not installed (apt-get install -y kamailio)")
    server = _start_kamailio(tmp_path, "WITH_AUTH", env={"HUILIU_SECRET_KEY": DUMMY_SECRET})
    yield server
    _stop(server.process)


def test_kamailio_runs_with_the_dispatcher_set_and_registrar(kamailio: Kamailio) -> None:
    listed = kamailio.rpc("dispatcher.list")
    shipped = [
        line.split()[1]
        for line in DISPATCHER_LIST.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for uri in shipped:
        assert f"URI: {uri}" in listed, listed

    assert kamailio.request("OPTIONS", "probe").startswith("SIP/2.0 200")
    # without WITH_AUTH only this host itself may register: the test client is on loopback
    assert kamailio.request("REGISTER", "1001").startswith("SIP/2.0 200")
    assert "AoR: 1001" in kamailio.rpc("ul.dump", "brief")


def test_kamailio_with_auth_challenges_and_accepts_the_derived_password(kamailio_with_auth: Kamailio) -> None:
    challenge = kamailio_with_auth.request("REGISTER", "1002")
    assert challenge.startswith("SIP/2.0 401"), challenge
    header = re.search(r"^WWW-Authenticate: Digest (.*)$", challenge, re.MULTILINE | re.IGNORECASE)
    assert header, challenge
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
    realm, nonce = params["realm"], params["nonce"]

    def authorization(password: str) -> str:
        uri = f"sip:127.0.0.1:{kamailio_with_auth.port}"
        ha1 = hashlib.md5(f"1002:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        cnonce, nc = uuid.uuid4().hex[:8], "00000001"
        if "qop" in params:
            digest = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
            qop = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
        else:
            digest = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
            qop = ""
        return (
            f'Authorization: Digest username="1002", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{digest}", algorithm=MD5{qop}\r\n'
        )

    wrong = kamailio_with_auth.request("REGISTER", "1002", authorization("not-the-password"))
    assert not wrong.startswith("SIP/2.0 200"), wrong

    password = hashlib.sha256(f"{DUMMY_SECRET}:sip:1002".encode()).hexdigest()[:24]
    accepted = kamailio_with_auth.request("REGISTER", "1002", authorization(password))
    assert accepted.startswith("SIP/2.0 200"), accepted
