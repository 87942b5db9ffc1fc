"""Which agents may take a contact, in which order, per strategy — as MongoDB filters and sorts (plain
field conditions only, see store.py), plus the atomic claim that reserves an agent for one offer."""

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
