"""The two small languages inside a flow: ``{variable}`` templates and ``condition`` expressions.

Conditions are a safe subset of Python expressions, checked once when the flow is validated and evaluated
without ``eval``: names (variables), string / number / ``true`` / ``false`` / ``null`` literals, lists of
literals, comparisons (``== != < <= > >= in not in``), ``and`` / ``or`` / ``not`` and parentheses.
A comparison between a number and a string of digits compares numbers (DTMF input is a string), any
other comparison between different kinds of value is false rather than an error.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Value = str | int | float | bool | None

_LITERAL_NAMES: dict[str, Value] = {"true": True, "false": False, "null": None}
_TEMPLATE_NAME = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{[^}]*\}?")


def _in(item: Any, container: Any) -> bool:
    return item in container


def _not_in(item: Any, container: Any) -> bool:
    return item not in container


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: _in,
    ast.NotIn: _not_in,
}


class ExpressionError(ValueError):
    """A template or condition that cannot be used; ``offset`` is the 0-based character position."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


# --------------------------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class Template:
    """Text with ``{name}`` placeholders (``{{`` and ``}}`` for literal braces)."""

    text: str

    @property
    def names(self) -> tuple[str, ...]:
        found: list[str] = []
        for match in _TEMPLATE_NAME.finditer(self.text):
            token = match.group(0)
            if token in ("{{", "}}"):
                continue
            if match.group(1) is None:
                raise ExpressionError(
                    f"{token!r} is not a placeholder; write {{name}} or {{{{ for a brace", match.start()
                )
            found.append(match.group(1))
        return tuple(dict.fromkeys(found))

    def render(self, variables: dict[str, Value], quote: Any = None) -> str:
        """The text with each placeholder replaced (``quote`` applied to values, e.g. URL quoting)."""

        def replace(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token[0]
            name = match.group(1)
            text = as_text(variables.get(name)) if name else token
            return quote(text) if quote is not None and name else text

        return _TEMPLATE_NAME.sub(replace, self.text)


def as_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """A compiled condition; ``names`` are the variables it reads."""

    source: str
    tree: ast.expr
    names: tuple[str, ...]

    def evaluate(self, variables: dict[str, Value]) -> bool:
        return bool(_evaluate(self.tree, variables))


def compile_condition(source: str) -> Condition:
    """Parse and check ``source``; raises ``ExpressionError`` saying what is not allowed and where."""
    text = source.strip()
    if not text:
        raise ExpressionError("the condition is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        offset = (exc.offset or 1) - 1
        raise ExpressionError(
            f"not a valid condition: {exc.msg} (at character {offset + 1})", offset
        ) from None
    names: list[str] = []
    _check(tree.body, names)
    return Condition(text, tree.body, tuple(dict.fromkeys(names)))


def _check(node: ast.expr, names: list[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        _check(node.operand, names)
    elif isinstance(node, ast.Compare):
        _check(node.left, names)
        for op, right in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARE:
                raise ExpressionError("only == != < <= > >= in and not in compare", node.col_offset)
            _check(right, names)
    elif isinstance(node, ast.Name):
        if node.id not in _LITERAL_NAMES:
            names.append(node.id)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise ExpressionError(f"literal {node.value!r} is not allowed", node.col_offset)
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        for element in node.elts:
            if not isinstance(element, ast.Constant | ast.UnaryOp):
                raise ExpressionError("a list may hold literals only", element.col_offset)
            _check(element, names)
    else:
        what = type(node).__name__
        raise ExpressionError(
            f"{what} is not allowed in a condition (use variables, literals, comparisons, and/or/not)",
            node.col_offset,
        )


def _evaluate(node: ast.expr, variables: dict[str, Value]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(value, variables) for value in node.values)
        return any(_evaluate(value, variables) for value in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, variables)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(operand, int | float) and not isinstance(operand, bool) else None
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, variables)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, variables)
            if not _compare(op, left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        if node.id in _LITERAL_NAMES:
            return _LITERAL_NAMES[node.id]
        return variables.get(node.id)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_evaluate(element, variables) for element in node.elts]
    raise ExpressionError(f"{type(node).__name__} is not allowed")  # pragma: no cover - refused by _check


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: str) -> float | None:
    try:
        return float(value.strip())
    except ValueError:
        return None


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if _is_number(left) and isinstance(right, str):
        right = _as_number(right) if _as_number(right) is not None else right
    elif isinstance(left, str) and _is_number(right):
        left = _as_number(left) if _as_number(left) is not None else left
    elif isinstance(op, ast.In | ast.NotIn) and isinstance(right, list):
        right = [_as_number(item) if _is_number(left) and isinstance(item, str) else item for item in right]
    try:
        return bool(_COMPARE[type(op)](left, right))
    except TypeError:
        return False
