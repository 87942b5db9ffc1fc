"""The demo tenant created under the embedded defaults (``HUILIU_DEMO=true``) so a newcomer can log in."""

from __future__ import annotations

from core.auth import NewUser, Role, UserService
from core.db import Database

DEMO_USERS = (
    NewUser(
        username="admin", password="admin-demo", display_name="管理员 Admin", role=Role.admin, language="zh"
    ),
    NewUser(
        username="supervisor",
        password="supervisor-demo",
        display_name="王班长 Wang (supervisor)",
        role=Role.supervisor,
        language="zh",
    ),
    NewUser(
        username="agent1", password="agent1-demo", display_name="李娜 Li Na", role=Role.agent, language="zh"
    ),
    NewUser(
        username="agent2", password="agent2-demo", display_name="Alex Chen", role=Role.agent, language="en"
    ),
)


async def seed_demo(users: UserService) -> None:
    for user in DEMO_USERS:
        await users.ensure(user)


async def seed_demo_kb(db: Database) -> None:
    """A few knowledge base articles (zh/en) the chat bot answers from."""
    from omnichannel.channels.kb import DEMO_ARTICLES, KnowledgeBase

    kb = KnowledgeBase(db)
    for article in DEMO_ARTICLES:
        await kb.ensure(article)
