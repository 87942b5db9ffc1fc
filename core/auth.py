"""Users, roles, password hashing (argon2) and bearer tokens.

Tokens are random strings handed to the user once; MongoDB stores only their SHA-256, with an expiry, so a
token works on every web node and can be revoked. Roles are ranked: an admin may do what a supervisor may, a
supervisor what an agent may.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import secrets
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.db import Database, as_utc, register_indexes, utcnow
from core.errors import Conflict, NotFound, TooManyRequests, Unauthorized


class Role(enum.StrEnum):
    agent = "agent"
    supervisor = "supervisor"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, required: Role) -> bool:
        return self.rank >= required.rank


_RANK = {Role.agent: 1, Role.supervisor: 2, Role.admin: 3}

Language = Literal["zh", "en"]

register_indexes("users", IndexModel([("username", ASCENDING)], unique=True))
register_indexes("auth_tokens", IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0))
register_indexes("login_failures", IndexModel([("last_at", ASCENDING)], expireAfterSeconds=86400))


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    username: str
    display_name: str
    role: Role
    language: Language = "zh"
    disabled: bool = False
    created_at: dt.datetime

    def allows(self, required: Role) -> bool:
        return not self.disabled and self.role.allows(required)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    display_name: str = Field(default="", max_length=128)
    role: Role = Role.agent
    language: Language = "zh"


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=128)
    role: Role | None = None
    language: Language | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=256)


def _user(doc: dict[str, Any]) -> User:
    return User(
        id=str(doc["_id"]),
        username=doc["username"],
        display_name=doc.get("display_name") or doc["username"],
        role=Role(doc["role"]),
        language=doc.get("language", "zh"),
        disabled=bool(doc.get("disabled", False)),
        created_at=as_utc(doc["created_at"]),
    )


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserService:
    def __init__(
        self,
        db: Database,
        *,
        token_ttl: dt.timedelta = dt.timedelta(hours=12),
        max_failures: int = 5,
        lockout: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.users = db["users"]
        self.tokens = db["auth_tokens"]
        self.failures = db["login_failures"]
        self.token_ttl = token_ttl
        self.max_failures = max_failures
        self.lockout = lockout
        self.hasher = PasswordHasher()

    async def create(self, new: NewUser) -> User:
        digest = await asyncio.to_thread(self.hasher.hash, new.password)
        doc = {
            "_id": ObjectId(),
            "username": new.username,
            "display_name": new.display_name or new.username,
            "role": new.role.value,
            "language": new.language,
            "disabled": False,
            "password_hash": digest,
            "created_at": utcnow(),
        }
        try:
            await self.users.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"username {new.username!r} is taken", code="username_taken") from None
        return _user(doc)

    async def ensure(self, new: NewUser) -> User:
        """Create the user unless one with that username exists (used for the demo tenant)."""
        existing = await self.users.find_one({"username": new.username})
        if existing is not None:
            return _user(existing)
        try:
            return await self.create(new)
        except Conflict:
            return _user(await self.users.find_one({"username": new.username}))

    async def get(self, user_id: str) -> User:
        doc = await self.users.find_one({"_id": _object_id(user_id, "user")})
        if doc is None:
            raise NotFound(f"no user {user_id}", code="user_not_found")
        return _user(doc)

    async def list(self) -> list[User]:
        return [_user(doc) async for doc in self.users.find({}, sort=[("username", 1)])]

    async def update(self, user_id: str, patch: UserPatch) -> User:
        changes: dict[str, Any] = patch.model_dump(exclude_none=True, exclude={"password"})
        if "role" in changes:
            changes["role"] = Role(changes["role"]).value
        if patch.password is not None:
            changes["password_hash"] = await asyncio.to_thread(self.hasher.hash, patch.password)
        if not changes:
            return await self.get(user_id)
        doc = await self.users.find_one_and_update(
            {"_id": _object_id(user_id, "user")}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise NotFound(f"no user {user_id}", code="user_not_found")
        if patch.disabled or patch.password is not None:
            await self.tokens.delete_many({"user_id": doc["_id"]})
        return _user(doc)

    async def login(self, username: str, password: str, ip: str | None = None) -> tuple[str, User]:
        """Check the password; on success a new token. Repeated failures from one address lock that
        username for that address a while (per address, so a stranger cannot lock a colleague out)."""
        now = utcnow()
        attempt = f"{username}|{ip or '-'}"
        failure = await self.failures.find_one({"_id": attempt})
        if failure and failure.get("locked_until") and as_utc(failure["locked_until"]) > now:
            wait = int((as_utc(failure["locked_until"]) - now).total_seconds()) + 1
            raise TooManyRequests(
                "too many failed logins; try again later", code="login_locked", retry_after=wait
            )
        doc = await self.users.find_one({"username": username})
        if doc is None or doc.get("disabled") or not await self._verify(doc["password_hash"], password):
            await self._count_failure(attempt, now)
            raise Unauthorized("wrong username or password", code="bad_credentials")
        await self.failures.delete_one({"_id": attempt})
        token = secrets.token_urlsafe(32)
        await self.tokens.insert_one(
            {
                "_id": _token_digest(token),
                "user_id": doc["_id"],
                "created_at": now,
                "expires_at": now + self.token_ttl,
            }
        )
        return token, _user(doc)

    async def logout(self, token: str) -> None:
        await self.tokens.delete_one({"_id": _token_digest(token)})

    async def resolve(self, token: str) -> User:
        """The user a bearer token belongs to, or ``Unauthorized``."""
        record = await self.tokens.find_one({"_id": _token_digest(token)})
        if record is None or as_utc(record["expires_at"]) <= utcnow():
            raise Unauthorized("token unknown or expired", code="invalid_token")
        doc = await self.users.find_one({"_id": record["user_id"]})
        if doc is None or doc.get("disabled"):
            raise Unauthorized("user disabled", code="invalid_token")
        return _user(doc)

    async def _verify(self, digest: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self.hasher.verify, digest, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _count_failure(self, attempt: str, now: dt.datetime) -> None:
        doc = await self.failures.find_one_and_update(
            {"_id": attempt},
            {"$inc": {"count": 1}, "$set": {"last_at": now}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if doc["count"] >= self.max_failures:
            await self.failures.update_one(
                {"_id": attempt}, {"$set": {"locked_until": now + self.lockout, "count": 0}}
            )


def _object_id(value: str, what: str) -> ObjectId:
    if not ObjectId.is_valid(value):
        raise NotFound(f"no {what} {value}", code=f"{what}_not_found")
    return ObjectId(value)


def parse_bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("send 'Authorization: Bearer <token>' (POST /api/auth/login gives one)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'", code="bad_authorization_header")
    return token.strip()
