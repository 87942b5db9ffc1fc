"""``huiliu telephony`` (hooked into ``core.cli``)."""

from __future__ import annotations

import argparse
import asyncio

from core.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    telephony = commands.add_parser(
        "telephony", help="this node's SIP front (Kamailio) and pool of pjsua2 telephony workers"
    )
    telephony.add_argument(
        "--no-front",
        action="store_true",
        help="run only the workers (Kamailio runs elsewhere, e.g. its own docker-compose service)",
    )


def main(settings: Settings, args: argparse.Namespace) -> int:
    from telephony.pool import serve

    return asyncio.run(serve(settings, front=not args.no_front))
