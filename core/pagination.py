"""Opaque keyset cursors (newest first): ``(ts, id)`` of the last item a page returned."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from bson import ObjectId

from core.errors import Invalid


def encode_cursor(ts: dt.datetime, object_id: ObjectId) -> str:
    raw = json.dumps([int(ts.timestamp() * 1000), str(object_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, ObjectId]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        millis, oid = json.loads(base64.urlsafe_b64decode(padded))
        return dt.datetime.fromtimestamp(int(millis) / 1000, dt.UTC), ObjectId(oid)
    except Exception:
        raise Invalid(
            "cursor is malformed; use next_cursor from the previous page", code="invalid_cursor"
        ) from None


def before(cursor: str | None, field: str = "ts") -> dict[str, Any]:
    """The query clause selecting items strictly after ``cursor`` in (field desc, _id desc) order."""
    if not cursor:
        return {}
    ts, oid = decode_cursor(cursor)
    return {"$or": [{field: {"$lt": ts}}, {field: ts, "_id": {"$lt": oid}}]}
