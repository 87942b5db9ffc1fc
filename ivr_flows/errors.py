"""What is wrong with a flow, said precisely: file, line, column, node and the problem."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.errors import Invalid, NotFound


@dataclass(frozen=True, slots=True)
class FlowError:
    """One problem in a flow document. ``line`` and ``column`` are 1-based; ``node`` is the id of the node
    the problem is in, when it is in one; ``code`` is stable and machine-readable."""

    file: str
    line: int
    column: int
    node: str | None
    code: str
    message: str

    def __str__(self) -> str:
        where = f"node {self.node}: " if self.node else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FlowInvalid(Invalid):
    """A flow was refused; ``errors`` lists every problem found (problem+json ``errors``)."""

    def __init__(self, errors: list[FlowError]) -> None:
        first = str(errors[0]) if errors else "invalid flow"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more, code="flow_invalid", errors=[error.to_json() for error in errors])
        self.errors = errors


class NoActiveFlow(NotFound):
    """A flow has no active version (yet); nothing can run it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"flow {name!r} has no active version", code="flow_not_active")
