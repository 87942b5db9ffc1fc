"""The ``huiliu`` command: every command is there for a person asking for help, while a process started for
one command loads only that command's package (``huiliu run``'s supervisor paid ~35 MB for all of them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "web", "worker", "beat", "migrate", "config", "email", "user", "asr", "telephony", "flows")


def python(code: str) -> str:
    reply = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return reply.stdout


def test_help_lists_every_command() -> None:
    reply = subprocess.run(
        [sys.executable, "-m", "core.cli", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert reply.returncode == 0
    for command in (*COMMANDS, "demo"):
        assert command in reply.stdout


def test_a_core_command_loads_none_of_the_other_packages_commands() -> None:
    loaded = python(
        "import sys, core.cli\n"
        "core.cli.build_parser(['worker', '--beat']).parse_args(['worker', '--beat'])\n"
        "print(sorted(name for name in core.cli.PLUGIN_COMMANDS.values() if name in sys.modules))"
    )
    assert loaded.strip() == "[]"


def test_each_package_command_still_parses() -> None:
    args = build_parser(["flows", "check", "main.yaml"]).parse_args(["flows", "check", "main.yaml"])
    assert args.command == "flows"
    args = build_parser(["telephony", "--no-front"]).parse_args(["telephony", "--no-front"])
    assert args.command == "telephony" and args.no_front
    args = build_parser(["worker", "--beat"]).parse_args(["worker", "--beat"])
    assert args.command == "worker" and args.beat
