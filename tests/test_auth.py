"""Users and tokens at the service level: lockout is per address, tokens die with password changes."""

from __future__ import annotations

import pytest

from core.auth import NewUser, Role, UserPatch, UserService, parse_bearer
from core.db import Database
from core.errors import TooManyRequests, Unauthorized


@pytest.fixture
async def users(db: Database) -> UserService:
    service = UserService(db, max_failures=3)
    await service.create(NewUser(username="lina", password="correct-horse", role=Role.agent))
    return service


async def test_failures_from_one_address_do_not_lock_out_the_user_elsewhere(users: UserService) -> None:
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await users.login("lina", "guess-guess", ip="198.51.100.7")
    with pytest.raises(TooManyRequests):
        await users.login("lina", "correct-horse", ip="198.51.100.7")
    token, user = await users.login("lina", "correct-horse", ip="203.0.113.5")
    assert user.username == "lina" and (await users.resolve(token)).id == user.id


async def test_password_change_and_disable_revoke_tokens(users: UserService) -> None:
    token, user = await users.login("lina", "correct-horse")
    await users.update(user.id, UserPatch(password="new-password-1"))
    with pytest.raises(Unauthorized):
        await users.resolve(token)
    token, _ = await users.login("lina", "new-password-1")
    await users.update(user.id, UserPatch(disabled=True))
    with pytest.raises(Unauthorized):
        await users.resolve(token)
    with pytest.raises(Unauthorized):
        await users.login("lina", "new-password-1")


async def test_password_is_stored_as_argon2_only(users: UserService, db: Database) -> None:
    doc = await db["users"].find_one({"username": "lina"})
    assert doc["password_hash"].startswith("$argon2")
    assert "correct-horse" not in str(doc)


def test_authorization_header_must_be_bearer() -> None:
    assert parse_bearer("Bearer abc") == "abc"
    for bad in (None, "", "Basic dXNlcjpwYXNz", "Bearer "):
        with pytest.raises(Unauthorized):
            parse_bearer(bad)
