"""``huiliu flows check FILE`` and ``huiliu flows simulate FILE`` (hooked into ``core.cli``): for flow
authors, before a flow is uploaded."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from core.settings import Settings
from ivr_flows.errors import FlowInvalid
from ivr_flows.service import nlu_intents
from ivr_flows.validation import Revision, check_flow, parse_flow


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flows = commands.add_parser("flows", help="IVR flows: check and simulate a flow file")
    actions = flows.add_subparsers(dest="flows_command", required=True)
    check = actions.add_parser("check", help="validate a flow file: every error with file, line and node")
    check.add_argument("file", type=Path)
    simulate = actions.add_parser(
        "simulate",
        help="walk a flow as a caller: type keys or words (one line per turn; stdin can be a script)",
    )
    simulate.add_argument("file", type=Path)
    simulate.add_argument("--caller", default="+8613800138000", help="the calling number (E.164)")
    simulate.add_argument(
        "--at", type=dt.datetime.fromisoformat, help="the time of the call (ISO 8601, default now)"
    )
    simulate.add_argument(
        "--queue-outcome",
        choices=["connected", "timeout", "unavailable"],
        default="connected",
        help="what a queue node gets (default: an agent answers at once)",
    )


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        yaml = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"huiliu flows: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    name = args.file.name
    if args.flows_command == "check":
        flow, errors = check_flow(yaml, name, known_intents=nlu_intents())
        for error in errors:
            print(error, file=sys.stderr)
        if flow is None or errors:
            print(f"{name}: {len(errors)} error(s)", file=sys.stderr)
            return 1
        print(f"{name}: ok ({len(flow.nodes)} nodes, starts at {flow.start})")
        return 0
    from ivr_flows.simulate import run_simulation

    try:
        flow = parse_flow(yaml, name, known_intents=nlu_intents())
    except FlowInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    at = args.at if args.at is None or args.at.tzinfo else args.at.replace(tzinfo=dt.UTC)
    context = run_simulation(
        Revision(args.file.stem, 0, flow), caller=args.caller, at=at, queue_outcome=args.queue_outcome
    )
    return 0 if context.outcome != "failed" else 1
