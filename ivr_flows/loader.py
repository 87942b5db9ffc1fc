"""YAML to plain data, remembering where every value came from.

PyYAML's composer keeps a mark (line, column) on every node but its constructors drop them. ``load_yaml``
builds plain dicts / lists / scalars itself and records the mark of each value under its path
(``("nodes", "main_menu", "timeout")``), so validation can point at the exact line. It also refuses what
PyYAML accepts silently: duplicate keys (the later one would win), non-string keys other than numbers,
and documents that expand into something huge through aliases.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml

from ivr_flows.errors import FlowError

Path = tuple[str | int, ...]

MAX_SOURCE_BYTES = 256 * 1024
MAX_VALUES = 20_000  # after alias expansion; a flow of a few hundred nodes stays far below

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class LoadedYaml:
    """The document as plain data; ``marks[path]`` is where the value at ``path`` starts and
    ``key_marks[path]`` where its key is written (for mapping entries)."""

    file: str
    data: Any
    marks: dict[Path, Mark] = field(default_factory=dict)
    key_marks: dict[Path, Mark] = field(default_factory=dict)

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """The mark of ``path`` or, when it has none (a missing field), of its nearest ancestor."""
        probe = path
        while True:
            found = (self.key_marks.get(probe) if key else None) or self.marks.get(probe)
            if found is not None:
                return found
            if not probe:
                return Mark(1, 1)
            probe = probe[:-1]

    def error(
        self, path: Path, code: str, message: str, *, node: str | None = None, key: bool = False
    ) -> FlowError:
        mark = self.mark(path, key=key)
        return FlowError(self.file, mark.line, mark.column, node, code, message)


class YamlRefused(Exception):
    def __init__(self, error: FlowError) -> None:
        super().__init__(str(error))
        self.error = error


def load_yaml(text: str, file: str = "<flow>") -> LoadedYaml:
    """Parse one YAML document; raises ``YamlRefused`` with a located ``FlowError``."""
    if len(text.encode()) > MAX_SOURCE_BYTES:
        raise YamlRefused(
            FlowError(file, 1, 1, None, "too_large", f"a flow may be at most {MAX_SOURCE_BYTES} bytes")
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or "not valid YAML"
        raise YamlRefused(FlowError(file, line, column, None, "yaml_syntax", problem)) from None
    except yaml.YAMLError as exc:
        raise YamlRefused(FlowError(file, 1, 1, None, "yaml_syntax", str(exc))) from None
    loaded = LoadedYaml(file, None)
    if root is None:
        return loaded
    builder = _Builder(loaded)
    loaded.data = builder.build(root, ())
    return loaded


class _Builder:
    def __init__(self, loaded: LoadedYaml) -> None:
        self.loaded = loaded
        self.count = 0
        self.scalars = yaml.SafeLoader("")

    def _mark(self, node: yaml.Node) -> Mark:
        return Mark(node.start_mark.line + 1, node.start_mark.column + 1)

    def _refuse(self, node: yaml.Node, code: str, message: str) -> YamlRefused:
        mark = self._mark(node)
        return YamlRefused(FlowError(self.loaded.file, mark.line, mark.column, None, code, message))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_VALUES or len(path) > 64:
            raise self._refuse(node, "too_large", f"the document expands to more than {MAX_VALUES} values")
        self.loaded.marks.setdefault(path, self._mark(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        try:
            return self.scalars.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self._refuse(node, "yaml_value", str(exc)) from None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._refuse(key_node, "yaml_key", "a key must be a plain string or number")
            key = self.scalars.construct_object(key_node)
            if isinstance(key, bool) or not isinstance(key, str | int | dt.date):
                raise self._refuse(key_node, "yaml_key", f"a key must be a string or number, not {key!r}")
            name = key.isoformat() if isinstance(key, dt.date) else str(key)
            if name in result:
                first = self.loaded.key_marks.get((*path, name), self._mark(key_node))
                raise self._refuse(
                    key_node, "duplicate_key", f"duplicate key {name!r} (first defined at line {first.line})"
                )
            self.loaded.key_marks.setdefault((*path, name), self._mark(key_node))
            result[name] = self.build(value_node, (*path, name))
        for source in merged:
            if not isinstance(source, yaml.MappingNode):
                raise self._refuse(source, "yaml_merge", "'<<' merges a mapping (or a list of mappings)")
            for name, value in self._mapping(source, path).items():
                result.setdefault(name, value)
        return result
