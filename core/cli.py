"""The ``huiliu`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

from core.log import configure_logging
from core.settings import Settings, SettingsError, load_settings


def _web(settings: Settings) -> int:
    from aiohttp import web

    from core.app import build_app

    web.run_app(
        build_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
    return 0


def _celery(settings: Settings, role: str) -> int:
    from core.worker import app

    if role == "worker":
        argv = [
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(settings.worker_concurrency),
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
        ]
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            "beat",
            "--loglevel",
            settings.log_level,
            "--schedule",
            str(settings.data_dir / "celerybeat-schedule"),
        ]
    app.start(argv)
    return 0


def _migrate(settings: Settings) -> int:
    import core.app  # noqa: F401 - registers every package's indexes and migrations
    from core.db import Database

    async def migrate() -> list[str]:
        assert settings.mongo_url is not None
        db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
        try:
            return await db.prepare()
        finally:
            await db.close()

    applied = asyncio.run(migrate())
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    from core.auth import NewUser, Role, UserService
    from core.db import Database

    password = os.environ.get("HUILIU_NEW_USER_PASSWORD") or getpass.getpass("password: ")

    async def create() -> str:
        assert settings.mongo_url is not None
        db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
        try:
            user = await UserService(db).create(
                NewUser(
                    username=args.username,
                    password=password,
                    role=Role(args.role),
                    display_name=args.display_name or args.username,
                    language=args.language,
                )
            )
            return user.id
        finally:
            await db.close()

    print(asyncio.run(create()))
    return 0


def _check_config(settings: Settings) -> int:
    for key, value in settings.model_dump().items():
        print(f"HUILIU_{key.upper()}={value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huiliu", description="汇流 Huiliu omnichannel contact center")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start everything on this machine (embedded MongoDB/Redis when unset)")
    commands.add_parser("web", help="the web process: REST, webhooks, Socket.IO, UI")
    commands.add_parser("worker", help="a Celery worker")
    commands.add_parser("beat", help="the Celery beat scheduler")
    commands.add_parser("migrate", help="create indexes and apply schema migrations")
    commands.add_parser("config", help="validate the settings and print them (secrets masked)")
    commands.add_parser("email", help="the inbound SMTP listener of the email channel")
    user = commands.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    create = user.add_parser(
        "create", help="create a user (password from HUILIU_NEW_USER_PASSWORD or prompt)"
    )
    create.add_argument("username")
    create.add_argument("--role", choices=["agent", "supervisor", "admin"], default="agent")
    create.add_argument("--display-name")
    create.add_argument("--language", choices=["zh", "en"], default="zh")
    from asr.cli import add_parser as add_asr_parser

    add_asr_parser(commands)
    from telephony.cli import add_parser as add_telephony_parser

    add_telephony_parser(commands)
    from ivr_flows.cli import add_parser as add_flows_parser

    add_flows_parser(commands)
    from core.traffic import add_parser as add_demo_parser

    add_demo_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"huiliu: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "run":
        from core.supervisor import run

        return run(settings)
    if args.command in ("worker", "beat"):
        return _celery(settings, args.command)
    if args.command == "web":
        return _web(settings)
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "email":
        from omnichannel.channels.mail_process import main as email_main

        return email_main(settings)
    if args.command == "config":
        return _check_config(settings)
    if args.command == "asr":
        from asr.cli import main as asr_main

        return asr_main(settings, args)
    if args.command == "telephony":
        from telephony.cli import main as telephony_main

        return telephony_main(settings, args)
    if args.command == "flows":
        from ivr_flows.cli import main as flows_main

        return flows_main(settings, args)
    if args.command == "demo":
        from core.traffic import main as demo_main

        return demo_main(settings, args)
    return _create_user(settings, args)


if __name__ == "__main__":
    sys.exit(main())
