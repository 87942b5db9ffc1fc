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
    telephony.add_argument(
        "--phone-password",
        metavar="USER",
        help="print the SIP password of phone USER (HUILIU_TELEPHONY_PHONE_AUTH) and exit",
    )


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.phone_password:
        from telephony.kamailio import phone_password

        print(phone_password(settings.secret(), args.phone_password))
        return 0
    from telephony.pool import serve

    return asyncio.run(serve(settings, front=not args.no_front))
