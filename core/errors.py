"""The error hierarchy every package raises; the web layer maps it once to RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class HuiliuError(Exception):
    """Base class: a stable machine-readable ``code`` plus a human ``detail``."""

    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str = "", *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.extra = extra

    def to_problem(self) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": f"https://huiliu.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        problem.update(self.extra)
        return problem


class Invalid(HuiliuError):
    status = 400
    code = "invalid"
    title = "Invalid request"


class Unauthorized(HuiliuError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(HuiliuError):
    status = 403
    code = "forbidden"
    title = "Not allowed for your role"


class NotFound(HuiliuError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(HuiliuError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(HuiliuError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class TooManyRequests(HuiliuError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(self, detail: str = "", *, retry_after: int = 60, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class Unavailable(HuiliuError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str = "", *, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after
