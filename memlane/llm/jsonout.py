"""Reading JSON out of model text: repair of near-JSON, and a small schema validator.

Local models wrap JSON in code fences, add prose around it, leave trailing commas or write
Python literals. ``parse`` recovers an object from such text or raises ``ModelOutputError``
with the raw text; ``validate`` checks the subset of JSON Schema memlane's prompts use
(type, properties, required, items, enum, additionalProperties: false).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from ..errors import ModelOutputError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def parse(text: str) -> dict[str, Any]:
    """The JSON object in ``text``, repairing common near-JSON."""
    candidates = [text.strip()]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            value = _loads(attempt)
            if isinstance(value, dict):
                return value
    raise ModelOutputError("the model's answer is not a JSON object", text)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)  # single quotes, True/False/None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Problems found (empty when ``value`` conforms)."""
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        ok = any(isinstance(value, _TYPES[t]) and not (
            t in ("integer", "number") and isinstance(value, bool)) for t in allowed)
        if not ok:
            return [f"{path}: expected {'/'.join(allowed)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        problems += [f"{path}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            problems += [f"{path}: unexpected {k!r}" for k in value if k not in props]
        for key, sub in props.items():
            if key in value:
                problems += validate(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += validate(item, schema["items"], f"{path}[{i}]")
    return problems
