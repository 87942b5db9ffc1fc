"""Human-readable ticket numbers, ``T-20261125-0001``: one atomic counter per local day.

The counter document of the day is created once (a racing creation loses harmlessly on the unique ``_id``),
then every number is one ``$inc`` on it, so fifty parallel creations get fifty distinct, consecutive
numbers on MongoDB and on the embedded server alike. Numbers past 9999 in a day simply grow a digit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

_ATTEMPTS = 10


def format_number(prefix: str, day: dt.date, seq: int) -> str:
    return f"{prefix}-{day:%Y%m%d}-{seq:04d}"


class TicketNumbers:
    def __init__(
        self, counters: AsyncCollection[dict[str, Any]], timezone: ZoneInfo, prefix: str = "T"
    ) -> None:
        self.counters = counters
        self.timezone = timezone
        self.prefix = prefix

    async def next(self, at: dt.datetime) -> str:
        """The next number of the local day that ``at`` falls on."""
        day = at.astimezone(self.timezone).date()
        key = f"{day:%Y%m%d}"
        for _ in range(_ATTEMPTS):
            doc = await self.counters.find_one_and_update(
                {"_id": key}, {"$inc": {"seq": 1}}, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return format_number(self.prefix, day, int(doc["seq"]))
            try:
                await self.counters.insert_one({"_id": key, "seq": 0})
            except DuplicateKeyError:
                pass  # another creation opened the day first; its counter is ours too
        raise RuntimeError(f"could not allocate a ticket number for {key}")
