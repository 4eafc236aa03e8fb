"""Reading reference data (dữ liệu danh mục) from YAML, keeping the line of every value.

Why: the catalogue, workflows and calendar are data that operators edit. A bad file must be
refused when it is loaded, with a message that names the file, the line and the field, rather
than surface later as a ``KeyError`` in the middle of a citizen's request. So files are
composed into YAML nodes (which carry their marks) and read through :class:`YamlValue`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from datetime import date, datetime
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor

#: The data files shipped with the package.
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"

_READ_AS = {
    _INT: "an integer",
    _FLOAT: "a decimal number",
    _BOOL: "true/false",
    _NULL: "null",
    _STR: "a string",
    _TIMESTAMP: "a date",
    "tag:yaml.org,2002:map": "a mapping",
    "tag:yaml.org,2002:seq": "a list",
}

# Only its scalar methods are used; they keep no state between calls.
_SCALARS = SafeConstructor()


class ReferenceDataError(Exception):
    """A reference data file is invalid; says where (file, line, field) and why."""

    def __init__(self, file: Path | str, line: int | None, field: str, reason: str) -> None:
        self.file = Path(file)
        self.line = line
        self.field = field
        self.reason = reason
        where = f"{self.file}:{line}" if line is not None else str(self.file)
        super().__init__(f"{where}: {field}: {reason}")


class YamlValue:
    """One value of a data file with its location, read only through typed accessors."""

    __slots__ = ("field", "file", "node")

    def __init__(self, file: Path, node: yaml.Node, field: str) -> None:
        self.file = file
        self.node = node
        self.field = field

    @property
    def line(self) -> int:
        """1-based line where the value starts."""
        return int(self.node.start_mark.line) + 1

    def error(self, reason: str) -> ReferenceDataError:
        """An error located at this value (the caller raises it)."""
        return ReferenceDataError(self.file, self.line, self.field, reason)

    def _child(self, node: yaml.Node, name: str) -> YamlValue:
        return YamlValue(self.file, node, f"{self.field}.{name}" if self.field else name)

    def _read_as(self) -> str:
        return _READ_AS.get(self.node.tag, self.node.tag)

    def fields(
        self, required: Collection[str], optional: Collection[str] = ()
    ) -> dict[str, YamlValue]:
        """The entries of a mapping; refuses missing, unknown and repeated keys."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"must be a mapping, got {self._read_as()}")
        known = set(required) | set(optional)
        found: dict[str, YamlValue] = {}
        for key_node, value_node in self.node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key not in known:
                allowed = ", ".join(sorted(known))
                raise self._child(key_node, str(key)).error(f"unknown field (allowed: {allowed})")
            if key in found:
                raise self._child(key_node, key).error(
                    f"repeated field (first on line {found[key].line})"
                )
            found[key] = self._child(value_node, key)
        for name in required:
            if name not in found:
                raise self._child(self.node, name).error("missing required field")
        return found

    def items(self) -> list[YamlValue]:
        """The items of a list, each named ``field[i]``."""
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"must be a list, got {self._read_as()}")
        return [
            YamlValue(self.file, node, f"{self.field}[{i}]")
            for i, node in enumerate(self.node.value)
        ]

    def _scalar(self, tag: str, expected: str) -> yaml.ScalarNode:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != tag:
            hint = ""
            if tag == _STR and isinstance(self.node, yaml.ScalarNode) and not self.is_null():
                hint = f" (YAML read {self.node.value!r} as {self._read_as()}; put it in quotes)"
            raise self.error(f"must be {expected}, got {self._read_as()}{hint}")
        return self.node

    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == _NULL

    def text(self) -> str:
        """A non-empty string, normalised to NFC so lookups and comparisons are exact."""
        value = _SCALARS.construct_scalar(self._scalar(_STR, "a string")).strip()
        if not value:
            raise self.error("must not be empty")
        return unicodedata.normalize("NFC", value)

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer; a float is refused even if whole, since money and days are exact."""
        value = int(_SCALARS.construct_yaml_int(self._scalar(_INT, "an integer")))
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(f"must be at most {maximum}, got {value}")
        return value

    def optional_integer(self, minimum: int | None = None) -> int | None:
        """An integer or null."""
        return None if self.is_null() else self.integer(minimum)

    def boolean(self) -> bool:
        return bool(_SCALARS.construct_yaml_bool(self._scalar(_BOOL, "true or false")))

    def calendar_date(self) -> date:
        """A calendar date written YYYY-MM-DD (not a date and time)."""
        value = _SCALARS.construct_yaml_timestamp(self._scalar(_TIMESTAMP, "a date YYYY-MM-DD"))
        if not isinstance(value, date) or isinstance(value, datetime):
            raise self.error("must be a date YYYY-MM-DD without a time")
        return value


def read_yaml(path: Path, root_fields: Collection[str]) -> dict[str, YamlValue]:
    """Compose ``path`` into nodes and return its top-level fields (all required)."""
    try:
        with path.open(encoding="utf-8") as stream:
            root = yaml.compose(stream, Loader=yaml.SafeLoader)
    except FileNotFoundError:
        raise ReferenceDataError(path, None, "<file>", "file not found") from None
    except UnicodeDecodeError as exc:
        raise ReferenceDataError(path, None, "<file>", f"not UTF-8: {exc.reason}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ReferenceDataError(path, line, "<syntax>", str(exc.problem)) from None
    if root is None:
        raise ReferenceDataError(path, None, "<file>", "file is empty")
    return YamlValue(path, root, "").fields(root_fields)
