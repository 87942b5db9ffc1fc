"""The demo tenant created under the embedded defaults (``HUILIU_DEMO=true``) so a newcomer can log in.

The logins are plain data: ``huiliu run``'s supervisor prints them in its banner without importing the
user service (pymongo, argon2: ~7 MB it would keep while it watches its children)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from core.auth import UserService
    from core.db import Database


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    display_name: str
    role: Literal["admin", "supervisor", "agent"]
    language: Literal["zh", "en"]


DEMO_USERS = (
    DemoUser("admin", "admin-demo", "管理员 Admin", "admin", "zh"),
    DemoUser("supervisor", "supervisor-demo", "王班长 Wang (supervisor)", "supervisor", "zh"),
    DemoUser("agent1", "agent1-demo", "李娜 Li Na", "agent", "zh"),
    DemoUser("agent2", "agent2-demo", "Alex Chen", "agent", "en"),
)


async def seed_demo(users: UserService) -> None:
    from core.auth import NewUser, Role

    for user in DEMO_USERS:
        await users.ensure(
            NewUser(
                username=user.username,
                password=user.password,
                display_name=user.display_name,
                role=Role(user.role),
                language=user.language,
            )
        )


async def seed_demo_kb(db: Database) -> None:
    """A few knowledge base articles (zh/en) the chat bot answers from."""
    from omnichannel.channels.kb import DEMO_ARTICLES, KnowledgeBase

    kb = KnowledgeBase(db)
    for article in DEMO_ARTICLES:
        await kb.ensure(article)
