"""Which agents may take a contact, in which order, per strategy — as MongoDB filters and sorts (plain
field conditions only, see store.py), plus the atomic claim that reserves an agent for one offer.

Skills come in two kinds. Required ones (the queue's, raised by the contact's ``skills``) decide who may take
a contact at all. Preferred ones (``preferred_skills``: the chat's channel and language, the intent's team,
VIP — set by the bot or the IVR) decide who should: for the queue's ``preference_seconds`` the contact is
offered only to agents who have them all, as long as such an agent is at work (busy is fine: it is worth
waiting for; on a break is not); after that, or when nobody at work has them, any eligible agent may take
it and the better match ranks first."""

from __future__ import annotations

from typing import Any

from agent_desktop.models import Contact, ContactKind, Presence, QueueConfig, Strategy

Doc = dict[str, Any]


def required_skills(queue: QueueConfig, contact: Contact) -> dict[str, int]:
    """The queue's skills, raised by the contact's own (a VIP call may need level 4)."""
    skills = dict(queue.skills)
    for skill, level in contact.skills.items():
        skills[skill] = max(level, skills.get(skill, 1))
    return skills


def preferred_beyond(contact: Contact, skills: dict[str, int]) -> dict[str, int]:
    """The contact's preferred skills (or levels) that ``skills`` does not already require."""
    return {skill: level for skill, level in contact.preferred_skills.items() if skills.get(skill, 0) < level}


def with_preferences(skills: dict[str, int], preferred: dict[str, int]) -> dict[str, int]:
    return {**skills, **{skill: max(level, skills.get(skill, 0)) for skill, level in preferred.items()}}


def match_score(agent_skills: dict[str, int], preferred: dict[str, int]) -> int:
    """How many of the preferred skills an agent has at the preferred level (ranks agents once the contact
    no longer waits for a perfect match)."""
    return sum(1 for skill, level in preferred.items() if agent_skills.get(skill, 0) >= level)


def working(skills: dict[str, int]) -> Doc:
    """Agents at work (available, or busy with a call, chats or wrap-up — not on a break) with ``skills``:
    someone a contact may wait for."""
    query: Doc = {"presence": {"$in": [Presence.available.value, Presence.wrap_up.value]}}
    for skill, level in skills.items():
        query[f"skills.{skill}"] = {"$gte": level}
    return query


def eligible(contact: Contact, skills: dict[str, int]) -> Doc:
    """The guard an agent must satisfy to be offered ``contact``; also the claim's filter."""
    guard: Doc = {"presence": Presence.available.value, "offer": None}
    if contact.kind is ContactKind.call:
        guard["call"] = None
    else:
        guard["chat_slots"] = {"$gt": 0}
        guard["chats_blocked"] = {"$ne": True}
    for skill, level in skills.items():
        guard[f"skills.{skill}"] = {"$gte": level}
    if contact.declined_by:
        guard["_id"] = {"$nin": contact.declined_by}
    return guard


def ordering(strategy: Strategy, skills: dict[str, int]) -> list[tuple[str, int]]:
    """Longest idle first; best-level-first puts the highest level of the queue's main skill before."""
    by_idle = [("idle_since", 1), ("_id", 1)]
    if strategy is Strategy.skills_best_level and skills:
        main = max(skills, key=lambda skill: (skills[skill], skill))
        return [(f"skills.{main}", -1), *by_idle]
    return by_idle


def claim_filter(agent_id: str, guard: Doc) -> Doc:
    """``guard`` narrowed to one agent (keeping an exclusion of agents who declined)."""
    excluded = guard.get("_id")
    if isinstance(excluded, dict) and agent_id in excluded.get("$nin", []):
        return {**guard, "_id": {"$in": []}}
    return {**guard, "_id": agent_id}
