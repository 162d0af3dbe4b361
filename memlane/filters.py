"""The filter language: a small JSON form, parsed once into a typed tree.

A filter is a mapping. Each key is a field and each value either a literal (equality) or a
mapping of operators to values; several keys are all required (AND)::

    {"kind": "turn"}
    {"importance": {"gte": 0.5}, "metadata.topic": {"in": ["travel", "food"]}}
    {"or": [{"speaker": "Alice"}, {"not": {"tags": {"contains": "draft"}}}]}

Operators: ``eq``, ``ne``, ``in``, ``nin``, ``gt``, ``gte``, ``lt``, ``lte``, ``contains``;
logic: ``and`` and ``or`` (lists of filters) and ``not`` (one filter), nested at most
``MAX_DEPTH`` deep, with at most ``MAX_CONDITIONS`` comparisons in all (an ``in`` list of
any length is one). Integers must fit in 64 bits (write larger numbers as floats).

Fields are the record's own (``kind``, ``role``, ``speaker``, ``text``, ``status``,
``user_id``, ``agent_id``, ``session_id``, the times, ``importance``, ``pinned``,
``version``, ``access_count``, ``tags``, ``source_ids``) or ``metadata.<key>[.<key>...]``.
Values must match the field's type; a comparison with a value of another type is false
(a metadata value ``"5"`` is not greater than ``4``). ``contains`` is substring on text and
membership on lists. A filter only narrows a search: it is always joined to the caller's
scope with AND, so it can never reach another scope.

Stores compile the tree to parameterized queries (never string-built values); ``matches``
is the reference semantics every compiled form must agree with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import FilterError, InvalidInputError
from .timeutil import parse_time, to_text
from .types import MemoryRecord, check_unicode

FieldType = Literal["text", "time", "number", "bool", "list", "json"]
Scalar = str | int | float | bool | None

FIELDS: dict[str, FieldType] = {
    "kind": "text", "role": "text", "speaker": "text", "text": "text", "status": "text",
    "user_id": "text", "agent_id": "text", "session_id": "text", "hash": "text",
    "event_time": "time", "valid_from": "time", "valid_to": "time", "created_at": "time",
    "updated_at": "time", "expires_at": "time", "last_accessed_at": "time",
    "importance": "number", "version": "number", "access_count": "number",
    "pinned": "bool", "tags": "list", "source_ids": "list",
}
OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains")
ORDER_OPS = ("gt", "gte", "lt", "lte")
_META_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_MISSING = object()
MAX_DEPTH = 32
"""How deeply ``and``, ``or`` and ``not`` may nest."""
MAX_CONDITIONS = 500
"""How many comparisons one filter may hold (each store compiles them into one query)."""
INT_RANGE = (-(2**63), 2**63 - 1)
"""Integers a filter may hold: what every store can bind (SQLite INTEGER, PostgreSQL bigint)."""


@dataclass(frozen=True, slots=True)
class Cmp:
    """One comparison. ``path`` is set for metadata fields (``field`` is then "metadata")."""

    field: str
    ftype: FieldType
    op: str
    value: Any
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Cmp | And | Or | Not


def parse(spec: Mapping[str, Any] | None) -> Node | None:
    """Validate a filter and return its tree (``None`` for no filter)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise FilterError(f"a filter must be a mapping, got {type(spec).__name__}")
    node = _parse_mapping(spec, 0)
    if _conditions(node) > MAX_CONDITIONS:
        raise FilterError(f"the filter holds more than {MAX_CONDITIONS} comparisons: use 'in' "
                          "with a list of values instead of many 'or'ed equalities")
    return node if node != And(()) else None


def _conditions(node: Node) -> int:
    if isinstance(node, And | Or):
        return sum(_conditions(n) for n in node.items)
    return _conditions(node.item) if isinstance(node, Not) else 1


def _parse_mapping(spec: Mapping[str, Any], depth: int) -> Node:
    items: list[Node] = []
    for key, value in spec.items():
        if key in ("and", "or", "not") and depth >= MAX_DEPTH:
            raise FilterError(f"the filter is nested deeper than {MAX_DEPTH} levels of "
                              "and/or/not: flatten it (an 'in' list replaces many 'or's)")
        if key in ("and", "or"):
            if not isinstance(value, Sequence) or isinstance(value, str) or not value:
                raise FilterError(f"'{key}' takes a non-empty list of filters")
            parts = tuple(_parse_sub(v, depth + 1) for v in value)
            items.append(And(parts) if key == "and" else Or(parts))
        elif key == "not":
            items.append(Not(_parse_sub(value, depth + 1)))
        else:
            items.extend(_parse_field(key, value))
    return items[0] if len(items) == 1 else And(tuple(items))


def _parse_sub(value: Any, depth: int) -> Node:
    if not isinstance(value, Mapping) or not value:
        raise FilterError(f"expected a non-empty filter mapping, got {_short(value)}")
    return _parse_mapping(value, depth)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _field_type(key: str) -> tuple[str, FieldType, tuple[str, ...]]:
    if key.startswith("metadata."):
        path = tuple(key.split(".")[1:])
        if not path or not all(_META_KEY.match(p) for p in path):
            raise FilterError(f"bad metadata key {key!r}: use letters, digits, '_' and '-'")
        return "metadata", "json", path
    if key not in FIELDS:
        raise FilterError(
            f"unknown filter field {key!r}; record fields are {', '.join(sorted(FIELDS))}, "
            "and metadata keys are written metadata.<key>"
        )
    return key, FIELDS[key], ()


def _parse_field(key: str, value: Any) -> list[Node]:
    name, ftype, path = _field_type(key)
    if not isinstance(value, Mapping):
        return [Cmp(name, ftype, "eq", _check_value(key, ftype, "eq", value), path)]
    if not value:
        raise FilterError(f"field {key!r} has an empty operator mapping")
    out: list[Node] = []
    for op, operand in value.items():
        if op not in OPERATORS:
            raise FilterError(f"unknown operator {op!r} on {key!r}; use one of {OPERATORS}")
        out.append(Cmp(name, ftype, op, _check_value(key, ftype, op, operand), path))
    return out


def _check_value(key: str, ftype: FieldType, op: str, value: Any) -> Any:
    if op in ("in", "nin"):
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise FilterError(f"'{op}' on {key!r} takes a list of values")
        return tuple(_check_scalar(key, ftype, "eq", v) for v in value)
    return _check_scalar(key, ftype, op, value)


def _check_scalar(key: str, ftype: FieldType, op: str, value: Any) -> Any:
    allowed = _ALLOWED_OPS[ftype]
    if op not in allowed:
        raise FilterError(f"operator {op!r} does not apply to {key!r} ({ftype}); use {allowed}")
    if ftype == "json":
        return _check_json_value(key, op, value)
    if value is None and op in ("eq", "ne") and ftype != "list":
        return None
    if ftype == "time":
        try:
            return to_text(parse_time(value, field=key))
        except InvalidInputError as exc:
            raise FilterError(str(exc)) from exc
    if not _VALUE_CHECKS[ftype](value):
        raise FilterError(f"{key!r} compares with a {ftype} value, got {_short(value)}")
    return _storable(key, value)


def _check_json_value(key: str, op: str, value: Any) -> Scalar:
    if isinstance(value, bool) or value is None:
        if op in ORDER_OPS:
            raise FilterError(f"'{op}' on {key!r} needs a number or a string")
        return value
    if isinstance(value, str | int | float):
        return _storable(key, value)
    raise FilterError(
        f"{key!r} compares with a string, number, boolean or null, got {_short(value)}")


def _storable(key: str, value: Scalar) -> Scalar:
    """A value every store can bind: UTF-8 text, integers within 64 bits."""
    if isinstance(value, str):
        try:
            return check_unicode(value, f"the value compared with {key!r}")
        except InvalidInputError as exc:
            raise FilterError(str(exc)) from None
    if isinstance(value, int) and not isinstance(value, bool) and not (
            INT_RANGE[0] <= value <= INT_RANGE[1]):
        raise FilterError(f"{key!r}: {value} does not fit in a 64-bit integer (-2**63 to "
                          "2**63-1); compare with a float such as 1e21 instead")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{key!r} compares with a finite number, got {value}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_ALLOWED_OPS: dict[FieldType, tuple[str, ...]] = {
    "text": OPERATORS,
    "time": ("eq", "ne", "gt", "gte", "lt", "lte"),
    "number": ("eq", "ne", "gt", "gte", "lt", "lte"),
    "bool": ("eq", "ne"),
    "list": ("contains",),
    "json": OPERATORS,
}
_VALUE_CHECKS: dict[FieldType, Callable[[Any], bool]] = {
    "text": lambda v: isinstance(v, str),
    "number": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, str),
}


# --- reference semantics -------------------------------------------------------------------


def matches(node: Node | None, record: MemoryRecord) -> bool:
    """Whether a record passes a filter: the semantics every store must reproduce."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(n, record) for n in node.items)
    if isinstance(node, Or):
        return any(matches(n, record) for n in node.items)
    if isinstance(node, Not):
        return not matches(node.item, record)
    return _compare(node, _record_value(node, record))


def _record_value(node: Cmp, record: MemoryRecord) -> Any:
    if node.ftype == "json":
        value: Any = record.metadata
        for part in node.path:
            if not isinstance(value, dict) or part not in value:
                return _MISSING
            value = value[part]
        return value
    value = getattr(record, node.field)
    if node.ftype == "time" and value is not None:
        return to_text(value)
    return value


def same_type(a: Any, b: Any) -> bool:
    """Values of one JSON type: strings, numbers (not booleans), booleans, or nulls."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b)
    if a is None or b is None:
        return a is None and b is None
    return isinstance(a, str) and isinstance(b, str)


def _equal(actual: Any, value: Any) -> bool:
    return actual is not _MISSING and same_type(actual, value) and actual == value


def _compare(node: Cmp, actual: Any) -> bool:
    op, value = node.op, node.value
    if op == "eq":
        return _equal(actual, value)
    if op == "ne":
        return not _equal(actual, value)
    if op == "in":
        return any(_equal(actual, v) for v in value)
    if op == "nin":
        return not any(_equal(actual, v) for v in value)
    if op == "contains":
        if isinstance(actual, list | tuple):
            return any(_equal(item, value) for item in actual)
        return isinstance(actual, str) and isinstance(value, str) and value in actual
    if actual is _MISSING or not same_type(actual, value):
        return False
    return bool(_ORDER[op](actual, value))


_ORDER = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
