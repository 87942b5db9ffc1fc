"""From YAML text to a ``Flow`` the executor can run — or to every precise reason it cannot.

Checks, each reported with file, line, column and node id: YAML syntax and duplicate keys; the header;
each node (unknown type, missing or unknown fields, bad values such as a negative timeout); edges to
missing nodes; nodes never reached from ``start``; loops that never wait for the caller (they would spin
forever); templates and conditions that read unknown variables; intents the NLU does not know.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ivr_flows.errors import FlowError, FlowInvalid
from ivr_flows.expressions import ExpressionError, Template, Value, compile_condition
from ivr_flows.loader import LoadedYaml, YamlRefused, load_yaml
from ivr_flows.nodes import (
    BUILTIN_VARIABLES,
    ENTITY_KINDS,
    LANGUAGES,
    NODE_ID,
    NODE_TYPES,
    VARIABLE,
    FlowHeader,
    IntentNode,
    Language,
    Node,
    PromptPart,
    SetNode,
)

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Flow:
    """A validated flow: nodes in document order, variables with their starting values."""

    description: str
    language: Language
    start: str
    variables: dict[str, Value]
    on_error: str | None
    nodes: dict[str, Node]
    source: str = field(repr=False)
    checksum: str

    def prompt_parts(self) -> Iterator[PromptPart]:
        for node in self.nodes.values():
            for prompt in node.prompts():
                yield from prompt


@dataclass(frozen=True)
class Revision:
    """One stored version of a named flow, validated and ready to run."""

    name: str
    version: int
    flow: Flow


def parse_flow(text: str, file: str = "<flow>", *, known_intents: Collection[str] | None = None) -> Flow:
    """The flow in ``text``; raises ``FlowInvalid`` listing every problem."""
    flow, errors = check_flow(text, file, known_intents=known_intents)
    if flow is None:
        raise FlowInvalid(errors)
    return flow


def check_flow(
    text: str, file: str = "<flow>", *, known_intents: Collection[str] | None = None
) -> tuple[Flow | None, list[FlowError]]:
    """``(flow, [])`` when ``text`` is a valid flow, ``(None, errors)`` otherwise (errors in line order)."""
    try:
        loaded = load_yaml(text, file)
    except YamlRefused as refused:
        return None, [refused.error]
    checker = _Checker(loaded, known_intents)
    flow = checker.run(text)
    errors = sorted(checker.errors, key=lambda error: (error.line, error.column))
    return (flow if not errors else None), errors


class _Checker:
    def __init__(self, loaded: LoadedYaml, known_intents: Collection[str] | None) -> None:
        self.loaded = loaded
        self.known_intents = known_intents
        self.errors: list[FlowError] = []

    def error(
        self, path: Path, code: str, message: str, node: str | None = None, *, key: bool = False
    ) -> None:
        self.errors.append(self.loaded.error(path, code, message, node=node, key=key))

    def run(self, text: str) -> Flow | None:
        data = self.loaded.data
        if not isinstance(data, dict):
            self.error((), "not_a_mapping", "a flow is a mapping with 'start' and 'nodes'")
            return None
        header = self._header(data)
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, dict):
            return None
        nodes = {node_id: node for node_id, raw in raw_nodes.items() if (node := self._node(node_id, raw))}
        if header is None:
            return None
        ids = set(raw_nodes)
        self._edges(header, nodes, ids)
        variables = self._variables(header, nodes)
        if len(nodes) == len(raw_nodes):
            self._graph(header, nodes)
        if self.errors:
            return None
        return Flow(
            description=header.description,
            language=header.language,
            start=header.start,
            variables=variables,
            on_error=header.on_error,
            nodes=nodes,
            source=text,
            checksum=hashlib.sha256(text.encode()).hexdigest(),
        )

    # ------------------------------------------------------------------------------------ structure

    def _header(self, data: dict[str, Any]) -> FlowHeader | None:
        try:
            return FlowHeader.model_validate(data)
        except ValidationError as exc:
            self._pydantic(exc, (), None, "flow")
            return None

    def _node(self, node_id: str, raw: Any) -> Node | None:
        path: Path = ("nodes", node_id)
        if not NODE_ID.match(node_id):
            self.error(
                path, "bad_node_id", f"{node_id!r} is not a node id (letters, digits, _ and -)", key=True
            )
        if not isinstance(raw, dict):
            self.error(path, "not_a_mapping", "a node is a mapping with a 'type'", node_id)
            return None
        kind = raw.get("type")
        if kind is None:
            self.error(path, "missing_field", "missing field 'type'", node_id, key=True)
            return None
        model = NODE_TYPES.get(str(kind))
        if model is None:
            known = ", ".join(NODE_TYPES)
            self.error(
                (*path, "type"),
                "unknown_node_type",
                f"unknown node type {kind!r}{_did_you_mean(str(kind), NODE_TYPES)} (known: {known})",
                node_id,
            )
            return None
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self._pydantic(exc, path, node_id, f"a {kind} node")
            return None

    def _pydantic(self, exc: ValidationError, prefix: Path, node_id: str | None, what: str) -> None:
        # A value that fits no member of a union (a prompt's ``say``: text or per-language texts) fails once
        # per member; report what it should have been once, or only the deeper, more precise error.
        bad_values: dict[Path, list[str]] = {}
        for detail in exc.errors(include_url=False, include_input=False):
            loc: Path = tuple(part for part in detail["loc"] if not _is_union_tag(part))
            path = (*prefix, *loc)
            name = str(loc[-1]) if loc else what
            kind = detail["type"]
            if kind == "missing":
                self.error(path[:-1], "missing_field", f"missing field '{name}'", node_id, key=True)
            elif kind == "extra_forbidden":
                inside = f"in {'.'.join(str(part) for part in loc[:-1])}" if len(loc) > 1 else f"for {what}"
                self.error(path, "unknown_field", f"unknown field '{name}' {inside}", node_id, key=True)
            else:
                message = str(detail["msg"]).removeprefix("Value error, ")
                bad_values.setdefault(loc, []).append(message)
        for loc, messages in bad_values.items():
            if any(other[: len(loc)] == loc and len(other) > len(loc) for other in bad_values):
                continue
            field_name = ".".join(str(part) for part in loc) or what
            shoulds = [message.removeprefix("Input should be ") for message in messages]
            message = messages[0] if len(messages) == 1 else "Input should be " + " or ".join(shoulds)
            self.error((*prefix, *loc), "bad_value", f"{field_name}: {message}", node_id)

    # ---------------------------------------------------------------------------------- references

    def _edges(self, header: FlowHeader, nodes: dict[str, Node], ids: set[str]) -> None:
        for name in ("start", "on_error"):
            target = getattr(header, name)
            if target is not None and target not in ids:
                self.error((name,), "missing_node", _missing(target, ids))
        for node_id, node in nodes.items():
            for path, target in node.targets():
                if target not in ids:
                    self.error(("nodes", node_id, *path), "missing_node", _missing(target, ids), node_id)
            if isinstance(node, IntentNode):
                self._intent(node_id, node)
            if isinstance(node, SetNode) and "language" in node.values:
                value = node.values["language"]
                if not (isinstance(value, str) and "{" in value) and value not in LANGUAGES:
                    self.error(
                        ("nodes", node_id, "values", "language"),
                        "bad_value",
                        f"language is one of {', '.join(LANGUAGES)}, not {value!r}",
                        node_id,
                    )

    def _intent(self, node_id: str, node: IntentNode) -> None:
        for kind in node.entities:
            if kind not in ENTITY_KINDS:
                self.error(
                    ("nodes", node_id, "entities", kind),
                    "unknown_entity",
                    f"unknown entity {kind!r}{_did_you_mean(kind, ENTITY_KINDS)} "
                    f"(known: {', '.join(ENTITY_KINDS)})",
                    node_id,
                    key=True,
                )
        if self.known_intents is None:
            return
        for intent in node.branches:
            if intent not in self.known_intents:
                self.error(
                    ("nodes", node_id, "branches", intent),
                    "unknown_intent",
                    f"unknown intent {intent!r}{_did_you_mean(intent, self.known_intents)}",
                    node_id,
                    key=True,
                )

    def _variables(self, header: FlowHeader, nodes: dict[str, Node]) -> dict[str, Value]:
        variables: dict[str, Value] = dict(BUILTIN_VARIABLES)
        variables["language"] = header.language
        for name, value in header.variables.items():
            if not VARIABLE.match(name):
                self.error(("variables", name), "bad_variable", f"{name!r} is not a variable name", key=True)
            variables[name] = value
        for node_id, node in nodes.items():
            for name in node.writes():
                if not VARIABLE.match(name):
                    self.error(
                        ("nodes", node_id), "bad_variable", f"{name!r} is not a variable name", node_id
                    )
                variables.setdefault(name, "")
        known = set(variables)
        for node_id, node in nodes.items():
            for reading in node.reads():
                path = ("nodes", node_id, *reading.path)
                try:
                    names = (
                        compile_condition(reading.text).names
                        if reading.condition
                        else Template(reading.text).names
                    )
                except ExpressionError as exc:
                    self.error(path, "bad_expression", str(exc), node_id)
                    continue
                for name in names:
                    if name not in known:
                        self.error(
                            path,
                            "unknown_variable",
                            f"unknown variable {name!r}{_did_you_mean(name, known)} — declare it under "
                            "'variables' or set it in a node",
                            node_id,
                        )
        return variables

    # --------------------------------------------------------------------------------------- graph

    def _graph(self, header: FlowHeader, nodes: dict[str, Node]) -> None:
        edges = {
            node_id: [target for _, target in node.targets() if target in nodes]
            for node_id, node in nodes.items()
        }
        roots = [header.start] + ([header.on_error] if header.on_error else [])
        reached = set()
        pending = [root for root in roots if root in nodes]
        while pending:
            current = pending.pop()
            if current not in reached:
                reached.add(current)
                pending.extend(edges[current])
        for node_id in nodes:
            if header.start in nodes and node_id not in reached:
                self.error(
                    ("nodes", node_id),
                    "unreachable_node",
                    f"node {node_id!r} is never reached from start {header.start!r}",
                    node_id,
                    key=True,
                )
        for component in _strongly_connected(edges):
            looping = len(component) > 1 or component[0] in edges[component[0]]
            if looping and not any(nodes[node_id].waits_for_caller for node_id in component):
                cycle = _cycle_through(component, edges)
                first = min(component, key=list(nodes).index)
                self.error(
                    ("nodes", first),
                    "endless_loop",
                    "these nodes loop forever without waiting for the caller (add a menu, collect, listen "
                    f"or callback node to the loop): {' → '.join(cycle)}",
                    first,
                    key=True,
                )


def _is_union_tag(part: Any) -> bool:
    # pydantic names union members in error locations ("tuple[...]", "function-before[...]", "str")
    return isinstance(part, str) and (
        "[" in part or part in ("str", "dict[enum,str]", "int", "float", "bool")
    )


def _missing(target: str, ids: set[str]) -> str:
    return f"goes to {target!r}, which is not a node{_did_you_mean(target, ids)}"


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


def _strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a flow of hundreds of nodes must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = edges[node]
            if position < len(successors):
                work.append((node, position + 1))
                successor = successors[position]
                if successor not in index:
                    work.append((successor, 0))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component[::-1])
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_through(component: list[str], edges: dict[str, list[str]]) -> list[str]:
    """One concrete loop inside a strongly connected component, for the error message."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}
    current = start
    while True:
        successor = next(target for target in edges[current] if target in members)
        if successor in seen:
            return [*path[path.index(successor) :], successor]
        path.append(successor)
        seen.add(successor)
        current = successor
