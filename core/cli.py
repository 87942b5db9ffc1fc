"""The ``huiliu`` command."""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import sys
from collections.abc import Sequence

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


def _celery(settings: Settings, role: str, *, beat: bool = False) -> int:
    from core.worker import app

    schedule = settings.data_dir / "celerybeat-schedule"
    if role == "worker":
        if beat:  # core.worker.EmbeddedBeat
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            app.conf.huiliu_beat_schedule_file = str(schedule)
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
            str(schedule),
        ]
    app.start(argv)
    return 0


def _migrate(settings: Settings) -> int:
    import asyncio

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
    import asyncio

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


# Commands other packages add (their module's ``add_parser``). Their modules import much of the platform,
# so a process started for one command imports only its own (``huiliu run``'s supervisor, which needs none
# of them, paid ~35 MB for the four).
PLUGIN_COMMANDS = {
    "asr": "asr.cli",
    "telephony": "telephony.cli",
    "flows": "ivr_flows.cli",
    "demo": "core.traffic",
}
CORE_COMMANDS = ("run", "web", "worker", "beat", "migrate", "config", "email", "user")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``huiliu`` parser; given the ``argv`` it will parse, it leaves out the other packages' commands
    when ``argv`` names a core command (help and unknown commands still list every command)."""
    parser = argparse.ArgumentParser(prog="huiliu", description="汇流 Huiliu omnichannel contact center")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start everything on this machine (embedded MongoDB/Redis when unset)")
    commands.add_parser("web", help="the web process: REST, webhooks, Socket.IO, UI")
    worker = commands.add_parser("worker", help="a Celery worker")
    worker.add_argument(
        "--beat",
        action="store_true",
        help="also run the beat scheduler, as a thread of this worker (what `huiliu run` does; "
        "never in more than one worker)",
    )
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
    wanted = _command(sys.argv[1:] if argv is None else argv)
    for name, module in PLUGIN_COMMANDS.items():
        if wanted == name or (wanted not in CORE_COMMANDS and wanted not in PLUGIN_COMMANDS):
            importlib.import_module(module).add_parser(commands)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"huiliu: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":  # the supervisor prints, it does not log: no structlog, no asyncio (~14 MB)
        from core.supervisor import run

        return run(settings)
    from core.log import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    if args.command in ("worker", "beat"):
        return _celery(settings, args.command, beat=getattr(args, "beat", False))
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
